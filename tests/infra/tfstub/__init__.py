"""A schema-only Terraform provider: serves a compact schema over the plugin protocol, validates nothing."""
