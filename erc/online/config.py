"""Dataclass configuration of the online stage (``erc serve``). Every field has a default."""
from __future__ import annotations

from dataclasses import dataclass, field

from erc.core.config import ConfigError


@dataclass
class Limits:
    """What one server holds at most, so its memory stays bounded whatever the clients do."""

    max_text_chars: int = field(default=2000, metadata={"help": "longest turn text accepted (characters)"})
    max_turns: int = field(default=1000, metadata={"help": "turns per conversation; a further turn is refused (409)"})
    max_conversations: int = field(default=1000, metadata={
        "help": "open conversations; a further one is refused (429) until one is deleted or expires"})
    idle_timeout_s: float = field(default=1800.0, metadata={
        "help": "a conversation with no turn for this long is closed (seconds)"})
    max_body_bytes: int = field(default=262144, metadata={
        "help": "largest request body read (bytes); a larger one is refused (413) before it is parsed"})

    def validate(self) -> None:
        for name in ("max_text_chars", "max_turns", "max_conversations", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.idle_timeout_s <= 0:
            raise ConfigError(f"idle_timeout_s: expected > 0 seconds, got {self.idle_timeout_s}")


@dataclass
class ServeConfig:
    """``erc serve``: a causal graph model over HTTP (``limits:`` section + these)."""

    model_dir: str = field(default="runs/train_graph/seed_0/best_model", metadata={
        "help": "best_model/ folder of a causal train-graph run (win_f 0, configs/graph_*_causal.yaml)"})
    host: str = field(default="127.0.0.1", metadata={"help": "address to listen on (0.0.0.0: every interface)"})
    port: int = field(default=8000, metadata={"help": "TCP port (0: a free one, printed at start)"})
    workers: int = field(default=1, metadata={
        "help": "server processes; conversations live in the process that created them, so only 1 is "
                "accepted (run more instances behind a balancer that routes by conversation id)"})
    num_threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = leave torch's default)"})
    device: str = field(default="cpu", metadata={"help": "torch device for the model and the text encoder"})
    log_level: str = field(default="info", metadata={"help": "uvicorn log level",
                                                     "choices": ("critical", "error", "warning", "info", "debug")})
    limits: Limits = field(default_factory=Limits, metadata={"help": "bounds on what the server holds (Limits)"})

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port: expected 0-65535, got {self.port}")
        if self.workers != 1:
            raise ConfigError(f"workers: {self.workers}: a conversation's state (cached turns) lives in the process "
                              "that created it, and uvicorn's workers share one socket with no routing by "
                              "conversation, so only 1 worker per server is correct; run one `erc serve` per "
                              "port behind a balancer that routes by conversation id")
        self.limits.validate()
