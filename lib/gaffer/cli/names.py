"""What a job name typed on the command line means, the same for every
command: ``session.job`` as given; a bare ``NAME`` is the job ``default.NAME``
if one is loaded, else the session ``NAME`` if there is one, else nothing (a
404, exit 1). The job comes first because it is what a bare name means in a
job's own commands (``info``, ``scale``, ``kill``), so that ``gaffer ps web``
and ``gaffer stop web`` always mean the same processes."""

from __future__ import annotations

from gaffer.client.errors import NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from gaffer.cli.context import Context


def job_name(raw: str) -> str:
    """``web`` → ``default.web``; ``session.job`` as given."""
    return raw if "." in raw else f"default.{raw}"


def resolve_names(
    ctx: Context, raws: Iterable[str], *, expand: bool = False, missing_ok: bool = False
) -> list[str]:
    """The names as the daemon knows them (job or session names), each once;
    ``all`` is every job (unless a job or session has that name).
    ``expand``: a session's jobs instead of the session (for commands that act
    on each job). ``missing_ok``: a bare name that is neither is taken as the
    job ``default.NAME`` (``events --job`` may watch a job not loaded yet);
    else it is a NotFound. A ``session.job`` that is not loaded is left to
    the command (the daemon's own 404, or the command's)."""
    names = list(dict.fromkeys(raws))
    if all("." in n for n in names):
        return names  # nothing to look up: no request
    loaded = ctx.client.jobs()
    out: list[str] = []
    for raw in names:
        if "." in raw or f"default.{raw}" in loaded:
            out.append(job_name(raw))
            continue
        members = [j for j in loaded if j.startswith(raw + ".")]
        if raw == "all" and not members:
            out.extend(loaded)  # supervisorctl's `all`, unless a session is named so
            continue
        if members:
            out.extend(members if expand else [raw])
        elif missing_ok:
            out.append(job_name(raw))
        else:
            raise NotFound(f"no job or session {raw}")
    return list(dict.fromkeys(out))


def not_found(name: str) -> NotFound:
    """The refusal for a name that matched no loaded job."""
    return NotFound(f"no job {name}" if "." in name else f"no job or session {name}")
