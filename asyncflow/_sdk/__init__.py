"""SDK internals; the public surface is asyncflow.client and asyncflow.worker."""
