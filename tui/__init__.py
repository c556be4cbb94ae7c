"""B-OTC trading terminal (Textual): client, dealer and regulator modes."""
