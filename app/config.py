"""Runtime configuration, read from SWITCHBOARD_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from argon2.profiles import RFC_9106_LOW_MEMORY
from pydantic import Field, SecretStr, model_validator
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
    # The routing workers' role: sees the routing rows of the shards it names per
    # transaction (app.router_shards), and nothing else (docs/decisions/0012).
    router_role: str = "switchboard_router"
    router_database_url: str | None = None
    router_db_password: SecretStr | None = None
    # Routing (shards are fixed, app.routing.shards; workers lease them).
    routing_lease_seconds: float = Field(default=10.0, gt=0.5, le=300)
    routing_offer_timeout_seconds: float = Field(default=20.0, gt=0, le=3600)
    routing_heartbeat_grace_seconds: float = Field(default=30.0, gt=0, le=3600)
    routing_batch_tenants: int = Field(default=200, ge=1, le=10_000)
    routing_max_offers_per_tenant: int = Field(default=50, ge=1, le=10_000)
    # `switchboard run` (everything in one process) runs a routing worker in the API.
    run_router: bool = False
    # `switchboard run` also takes inbound mail for the email channels on this port
    # (0: not in this process; production runs `switchboard smtp`).
    run_smtp_port: int = Field(default=0, ge=0, le=65535)
    # Outbound messages not delivered after commit (crash, provider outage) are retried
    # by every API process's sweeper every this many seconds (0: off).
    outbound_sweep_seconds: float = Field(default=5.0, ge=0, le=3600)
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

    # Encryption at rest (app.core.crypto): base64 32-byte AES-256-GCM keys, comma
    # separated, the first one encrypts (rotation: put the new key first and keep the
    # old ones while data they encrypted remains). Or a file holding the same; unset
    # outside production: generated once into data_dir/encryption.key (0600).
    encryption_key: SecretStr | None = None
    encryption_key_file: Path | None = None

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

    # Email channels receive at <local_part>@<this domain> (shared by all tenants; its
    # MX must point at the inbound SMTP service).
    inbound_email_domain: str = "inbound.switchboard.localhost"
    # Inbound SMTP (`switchboard smtp`): the largest message taken (SIZE), recipients per
    # message, and attachments kept per mail (the rest are listed as skipped).
    smtp_max_message_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    smtp_max_recipients: int = Field(default=20, ge=1, le=1000)
    smtp_messages_per_address_per_minute: int = Field(default=120, ge=1)
    email_max_attachments: int = Field(default=20, ge=0, le=1000)

    # Object storage (app/storage, docs/decisions/0014): attachments and recordings.
    # "local": encrypted files under storage_dir (default data_dir/objects), presigned
    # URLs served by this API; "s3": a bucket (SSE always on), presigned by S3 itself.
    storage_backend: Literal["local", "s3"] = "local"
    storage_dir: Path | None = None
    s3_bucket: str = "switchboard"
    s3_prefix: str = ""
    s3_region: str = "us-east-1"
    s3_endpoint_url: str | None = None
    s3_sse: Literal["AES256", "aws:kms"] = "AES256"
    s3_kms_key_id: str | None = None
    storage_presign_seconds: int = Field(default=900, ge=1, le=7 * 86400)
    # Attachment objects no `attachments` row names (a rolled-back message, a deleted
    # conversation) are deleted by the hourly sweep once older than this
    # (app/storage/sweep.py); younger ones may belong to a transaction still running.
    storage_orphan_grace_hours: float = Field(default=24.0, ge=1, le=24 * 365)
    attachment_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    attachment_content_types: list[str] = Field(
        default_factory=lambda: [
            "image/png",
            "image/jpeg",
            "image/gif",
            "image/webp",
            "application/pdf",
            "text/plain",
            "text/csv",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "audio/mpeg",
            "video/mp4",
        ]
    )

    # Phone numbers (app/phone_numbers): the carrier new numbers are searched and claimed
    # at. "sandbox" offers only numbers reserved for fiction and calls nothing outside.
    carrier: Literal["sandbox", "twilio", "aws"] = "sandbox"
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_api_base_url: str = "https://api.twilio.com"
    twilio_pricing_base_url: str = "https://pricing.twilio.com"
    # AWS: Amazon Connect's phone-number API (docs/decisions/0008); credentials come
    # from the usual AWS chain (environment, profile, instance role).
    aws_region: str = "us-east-1"
    aws_endpoint_url: str | None = None
    aws_connect_instance_arn: str | None = None
    # A released number cannot be claimed again (by anyone) for this long.
    number_cooldown_days: int = Field(default=30, ge=0, le=365)

    # Password hashing cost (argon2id; memory in KiB). The defaults are RFC 9106's
    # low-memory profile, argon2-cffi's own: keep them in production. Tests lower them.
    # Each hash records its parameters, so hashes made at another cost still verify,
    # and a successful login rehashes them at this one.
    argon2_time_cost: int = Field(default=RFC_9106_LOW_MEMORY.time_cost, ge=1)
    argon2_memory_cost: int = Field(default=RFC_9106_LOW_MEMORY.memory_cost, ge=8)
    argon2_parallelism: int = Field(default=RFC_9106_LOW_MEMORY.parallelism, ge=1, le=255)

    # Messaging providers (app/messaging): API bases (Twilio's is twilio_api_base_url
    # above) and how old a signed webhook may be (signed timestamps and message times).
    meta_graph_base: str = "https://graph.facebook.com"
    meta_graph_version: str = "v21.0"
    wechat_api_base: str = "https://api.weixin.qq.com"
    webhook_max_age_seconds: int = Field(default=300, ge=10, le=86400)

    # Proactive engagement (app/proactive, docs/decisions/0016): platform-wide limits no
    # tenant rule can loosen. At most proactive_max_contacts proactive contacts per
    # customer in proactive_window_days, all channels together; none in the customer's
    # local quiet hours (HH:MM, may wrap midnight; start == end: no quiet hours).
    proactive_max_contacts: int = Field(default=3, ge=0, le=1000)
    proactive_window_days: int = Field(default=7, ge=1, le=365)
    proactive_quiet_start: str = Field(default="21:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    proactive_quiet_end: str = Field(default="08:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")

    # Web chat widget (app/webchat): how long a visitor token lasts, how long after that
    # a returning visitor keeps their identity, how often a waiting visitor's place in
    # line is pushed, and the abuse limits of the public widget API (fixed windows, per
    # client address or per visitor).
    widget_token_ttl_seconds: int = Field(default=12 * 3600, ge=60, le=30 * 86400)
    widget_visitor_resume_days: int = Field(default=180, ge=0, le=3650)
    widget_position_seconds: float = Field(default=3.0, gt=0, le=300)
    widget_sessions_per_address_per_minute: int = Field(default=30, ge=1)
    widget_ws_per_address_per_minute: int = Field(default=30, ge=1)
    widget_messages_per_visitor_per_minute: int = Field(default=30, ge=1)
    widget_page_views_per_visitor_per_minute: int = Field(default=30, ge=1)
    widget_conversations_per_visitor_per_hour: int = Field(default=10, ge=1)
    widget_uploads_per_visitor_per_hour: int = Field(default=20, ge=1)

    # Amazon SNS SMS (app/messaging/providers/aws_sms.py, docs/decisions/0019): the region
    # and endpoint sends go to (None: the region's own; tests: a moto server), and the
    # hosts (a regex on the host name) whose SNS signing certificates and subscription
    # URLs we fetch; plain http only when allowed (tests' local certificate server).
    aws_sms_region: str = "us-east-1"
    aws_sms_endpoint_url: str | None = None
    aws_sns_cert_host_pattern: str = r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$"
    aws_sns_allow_http_cert: bool = False

    @property
    def pg_data_dir(self) -> Path:
        return (self.pg_dir or self.data_dir / "pg").resolve()

    @model_validator(mode="after")
    def _argon2_memory_covers_lanes(self) -> Settings:
        if self.argon2_memory_cost < 8 * self.argon2_parallelism:
            raise ValueError("argon2_memory_cost must be at least 8 KiB per lane of parallelism")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
