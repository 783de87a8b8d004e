"""The cockpit: web pages over the API's services, served by the same app at ``/``."""
