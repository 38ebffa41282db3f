"""Runtime configuration, read from SWITCHBOARD_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_", extra="ignore")

    # Database. Unset: `switchboard run` starts the embedded PostgreSQL.
    # DATABASE_URL is the migrating (owner or superuser) connection.
    database_url: str | None = None
    # The runtime role's connection; derived from database_url when unset.
    app_database_url: str | None = None
    app_db_password: SecretStr | None = None
    db_name: str = "switchboard"
    owner_role: str = "switchboard_owner"
    app_role: str = "switchboard_app"
    db_pool_size: int = 10
    db_max_overflow: int = 10

    data_dir: Path = Path(".switchboard")
    pg_dir: Path | None = None  # default: data_dir / "pg"
    pg_system_user: str = "switchboard-pg"

    environment: Literal["embedded", "development", "production", "test"] = "embedded"
    public_url: str = "http://127.0.0.1:8000"

    # Tokens. Signing keys: a JWKS JSON document (private keys) or a file holding one;
    # unset in the embedded mode: generated once into data_dir/jwt-keys.json (0600).
    jwt_keys: SecretStr | None = None
    jwt_keys_file: Path | None = None
    jwt_issuer: str = "switchboard"
    access_token_ttl_seconds: int = Field(default=900, ge=60, le=86400)
    refresh_token_ttl_seconds: int = Field(default=30 * 86400, ge=3600)

    # Login throttling (sliding window over failed attempts).
    login_window_seconds: int = 900
    login_max_failures_per_account: int = 5
    login_max_failures_per_address: int = 30

    # Outbound mail: dev (kept in the tenant's outbox), smtp, or ses (boto3).
    mail_backend: Literal["dev", "smtp", "ses"] = "dev"
    mail_from: str = "Switchboard <no-reply@switchboard.localhost>"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    ses_region: str = "us-east-1"
    ses_endpoint_url: str | None = None

    # Telemetry: off by default; ratio-sampled when on.
    otel_enabled: bool = False
    otel_exporter: Literal["otlp", "console", "none"] = "otlp"
    otel_sample_ratio: float = Field(default=0.1, ge=0.0, le=1.0)
    otel_service_name: str = "switchboard"

    max_body_bytes: int = 1_048_576

    @property
    def pg_data_dir(self) -> Path:
        return (self.pg_dir or self.data_dir / "pg").resolve()


@lru_cache
def get_settings() -> Settings:
    return Settings()
