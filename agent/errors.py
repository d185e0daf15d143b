"""Errors the agent raises, each carrying where the problem was.

AgentError
├── DecodeError (ValueError)     malformed IPFIX or Super Mediator JSON
│   ├── TemplateError            a template set that cannot be used
│   └── MissingTemplateError     data for a template not (or no longer) known
├── BundleError (ValueError)     a model bundle that fails verification
├── ConfigError (ValueError)     a bad configuration key or value
└── UpstreamError                the central store did not take a summary
"""


class AgentError(Exception):
    """Base of every error raised by the agent's own code."""


class DecodeError(AgentError, ValueError):
    """Malformed input; ``offset`` is the byte offset of the message in its stream."""

    def __init__(
        self,
        reason: str,
        *,
        exporter: str | None = None,
        domain: int | None = None,
        template_id: int | None = None,
        offset: int | None = None,
    ):
        self.reason = reason
        self.exporter = exporter
        self.domain = domain
        self.template_id = template_id
        self.offset = offset
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = [
            f"{key}={value}"
            for key, value in (
                ("exporter", self.exporter),
                ("domain", self.domain),
                ("template", self.template_id),
                ("offset", self.offset),
            )
            if value is not None
        ]
        return self.reason + (f" ({' '.join(where)})" if where else "")


class TemplateError(DecodeError):
    """A template or options template set that is malformed or over a limit."""


class MissingTemplateError(DecodeError):
    """A data set whose template is unknown in its session and observation domain."""


class BundleError(AgentError, ValueError):
    """A model bundle that is missing files, fails its digests or does not match."""


class ConfigError(AgentError, ValueError):
    """A configuration that names an unknown key or holds a bad value."""


class UpstreamError(AgentError):
    """The central store is unreachable or refused a summary."""
