"""B-OTC services: the processes that join the transport (``bus``) to the core (``rfq``)."""
