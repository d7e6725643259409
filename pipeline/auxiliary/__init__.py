"""The auxiliary image-image classifier (synthetic prototypes) and the domain-gap diagnostics."""
