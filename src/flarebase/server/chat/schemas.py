"""Request and response bodies of the chat API (the AI SDK's and vercel/chatbot's names)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
MESSAGE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,254}$"  # (they name R2 keys)
MAX_PARTS = 10_000
MAX_METADATA_BYTES = 64 * 1024

Visibility = Literal["public", "private"]


class UIMessageIn(BaseModel):
    """An AI SDK UIMessage: {id, role, parts: [{type, ...}], metadata?}."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(pattern=MESSAGE_ID_PATTERN)
    role: Literal["user", "assistant", "system"]
    parts: list[dict[str, Any]] = Field(max_length=MAX_PARTS)
    metadata: Any = None

    @field_validator("parts")
    @classmethod
    def _typed_parts(cls, parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, part in enumerate(parts):
            kind = part.get("type")
            if not isinstance(kind, str) or not kind:
                raise ValueError(f"part {i} has no type")
            if kind == "text" and not isinstance(part.get("text"), str):
                raise ValueError(f"part {i} (text) needs a string text")
            if kind == "file" and not (
                isinstance(part.get("url"), str) and isinstance(part.get("mediaType"), str)
            ):
                raise ValueError(f"part {i} (file) needs url and mediaType strings")
        return parts

    def stored(self) -> dict[str, Any]:
        """What is saved: id, role, parts, metadata."""
        out: dict[str, Any] = {"id": self.id, "role": self.role, "parts": self.parts}
        if self.metadata is not None:
            out["metadata"] = self.metadata
        return out


class ChatRequest(BaseModel):
    """What DefaultChatTransport sends (extra body fields are allowed and ignored)."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(pattern=ID_PATTERN, description="the chat id (created on first message)")
    messages: list[UIMessageIn] = Field(
        default_factory=list,
        max_length=10_000,
        description="the chat's messages; only the last is used (the server has the rest)",
    )
    message: UIMessageIn | None = Field(
        default=None, description="the new message, for front ends that send only it"
    )
    trigger: Literal["submit-message", "regenerate-message"] = "submit-message"
    messageId: str | None = Field(default=None, max_length=255)
    selectedChatModel: str | None = Field(default=None, max_length=100)
    model: str | None = Field(default=None, max_length=100)
    selectedVisibilityType: Visibility | None = None
    visibility: Visibility | None = None

    def last_message(self) -> UIMessageIn | None:
        return self.message or (self.messages[-1] if self.messages else None)


class ChatOut(BaseModel):
    id: str
    createdAt: str
    updatedAt: str
    title: str
    userId: str
    visibility: Visibility
    model: str | None
    status: str = Field(description="ready, streaming, stopped, error or interrupted")


class ChatUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, min_length=1, max_length=200)
    visibility: Visibility | None = None


class HistoryOut(BaseModel):
    chats: list[ChatOut]
    hasMore: bool


class Deleted(BaseModel):
    deletedCount: int


class UIMessageOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    role: str
    parts: list[dict[str, Any]]
    metadata: dict[str, Any] | None = None


class MessagesOut(BaseModel):
    chat: ChatOut
    messages: list[UIMessageOut]
    isReadonly: bool = Field(description="true when the viewer does not own the chat")


class Stopped(BaseModel):
    stopped: bool = Field(description="false when nothing was running")


class VoteIn(BaseModel):
    chatId: str = Field(min_length=1, max_length=255)
    messageId: str = Field(min_length=1, max_length=255)
    type: Literal["up", "down"]


class VoteOut(BaseModel):
    chatId: str
    messageId: str
    isUpvoted: bool
