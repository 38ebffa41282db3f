"""Single sign-on with a tenant's own OpenID Connect provider."""
