"""Code generated from proto/asyncflow/v1 by `make proto`; do not edit."""
