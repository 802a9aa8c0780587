"""The OpenAPI 3 description of the HTTP API (``GET /openapi.json``).

The document is built by :func:`spec` from small helpers: JSON Schema builders,
the shared components (schemas, parameters, error responses), then one function
per group of paths. ``tests/test_openapi.py`` holds it to the served routes (every
route and every method described, nothing else) and fuzzes the live server
against it.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from gaffer import __version__
from gaffer.http.keystore import MAX_LABEL, MAX_PASSWORD
from gaffer.states import ALL_STATES

Schema = dict[str, Any]

JSON = "application/json"
TEXT = "text/plain"
OCTETS = "application/octet-stream"
SSE = "text/event-stream"

# Who may call an operation: with an API key, or without one on the owner's unix
# socket (or when the daemon does not require keys).
KEYED: list[dict[str, list[str]]] = [{"apiKey": []}, {}]
PUBLIC: list[dict[str, list[str]]] = []

DESCRIPTION = """\
The gaffer daemon's HTTP API: the gaffer 0.5 wire API (its paths and JSON shapes)
plus Server-Sent Events, output streams, metrics and this description.

Jobs are named `<session>.<job>`; processes are addressed by their internal pid, a
counter that is never reused (not the OS pid, which is `os_pid`).

Requests are authenticated with an API key in the `X-Api-Key` header. A caller on
the daemon's unix socket running as the daemon's user (or root) needs no key, nor
does anyone when the daemon runs with `require_key: false`. A missing key is a 401,
an unknown key or a key without the right is a 403.

Every failure is answered `{"error": reason, "errno": status}`, for instance 405 for
a method a path does not implement and 404 for a path no route serves. A body over
the daemon's limit is a 413. Every path except the websocket ones also answers
`OPTIONS` (204, with `Allow` and, for an allowed origin, the CORS headers); it is
not listed per path.
"""


# -- JSON Schema builders --------------------------------------------------------


def string(**kw: Any) -> Schema:
    return {"type": "string", **kw}


def integer(**kw: Any) -> Schema:
    return {"type": "integer", **kw}


def number(**kw: Any) -> Schema:
    return {"type": "number", **kw}


def boolean(**kw: Any) -> Schema:
    return {"type": "boolean", **kw}


def array(items: Schema, **kw: Any) -> Schema:
    return {"type": "array", "items": items, **kw}


def nullable(schema: Schema) -> Schema:
    """``schema`` or null. OpenAPI 3.0's ``nullable`` only counts next to a
    ``type``, so for an ``anyOf`` it goes on each alternative that has one."""
    if "anyOf" in schema:
        return {**schema, "anyOf": [nullable(s) if "type" in s else s for s in schema["anyOf"]]}
    return {**schema, "nullable": True}


def any_of(*schemas: Schema, **kw: Any) -> Schema:
    return {"anyOf": list(schemas), **kw}


def obj(
    properties: dict[str, Schema],
    required: tuple[str, ...] = (),
    additional: bool | Schema = False,
    **kw: Any,
) -> Schema:
    """An object; ``additional`` False closes it to the listed properties."""
    out: Schema = {"type": "object", "properties": properties}
    if required:
        out["required"] = list(required)
    out["additionalProperties"] = additional
    return {**out, **kw}


def record(**properties: Schema) -> Schema:
    """A closed object whose every property is always there."""
    return obj(properties, tuple(properties))


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def str_or_num() -> Schema:
    return any_of(string(), number())


def int_or_str(**kw: Any) -> Schema:
    return any_of(integer(), string(), **kw)


def name_list(description: str) -> Schema:
    return array(string(), description=description)


# -- schemas ---------------------------------------------------------------------


def job_config(required: tuple[str, ...], closed: bool = True) -> Schema:
    """A job config (0.5's option names plus the restart controls). A request's
    is closed: an unknown option is refused."""
    seconds = number(minimum=0)
    labels = array(string(minLength=1, pattern="^[^./]+$"), uniqueItems=True)
    props: dict[str, Schema] = {
        "name": string(pattern="^[^./][^/]*$", description="the job part of `session.job`"),
        "cmd": string(minLength=1, description="program (split like a shell when no args)"),
        "args": nullable(any_of(array(str_or_num()), string())),
        "env": obj({}, additional=str_or_num(), description="NAME: value; $VAR expands"),
        "os_env": boolean(description="inherit the daemon's environment"),
        "cwd": nullable(string(minLength=1)),
        "uid": nullable(int_or_str(description="user name or number")),
        "gid": nullable(int_or_str(description="group name or number")),
        "umask": nullable(
            any_of(integer(minimum=0, maximum=0o777), string(), description="octal string")
        ),
        "shell": boolean(),
        "detach": boolean(),
        "numprocesses": integer(minimum=0),
        "start": boolean(description="start the job's processes once loaded"),
        "priority": integer(description="lower starts first and stops last"),
        "redirect_output": nullable({**labels, "maxItems": 2}),
        "redirect_input": boolean(description="give the processes a stdin pipe"),
        "custom_streams": labels,
        "graceful_timeout": seconds,
        "stop_signal": int_or_str(description="15, 'TERM' or 'SIGTERM'"),
        "flapping": nullable(any_of(boolean(), ref("Flapping"))),
        "restart": string(enum=["always", "on-failure", "never"]),
        "success_exit_codes": any_of(integer(minimum=0), array(integer(minimum=0))),
        "startsecs": seconds,
        "backoff": ref("Backoff"),
        "rolling": string(enum=["start-first", "stop-first"]),
        "description": string(maxLength=1000, description="what the job is, for people"),
        "tags": array(
            string(minLength=1, maxLength=64, pattern="^[^\\s,]+$"),
            maxItems=32,
            description="words to select jobs by (?tag=); duplicates dropped",
        ),
        "version": string(maxLength=1000, description="the version the job runs, one line"),
        "schedule": string(
            description="cron expression (5 fields, or 6 with seconds last): "
            "run a one-off process at those times; empty: none"
        ),
        "timezone": string(description="IANA time zone of the schedule; empty: local time"),
        "concurrency": string(
            enum=["skip", "queue", "allow"],
            description="a fire while the previous scheduled run still goes",
        ),
        "catch_up": boolean(description="one run at start if a fire was missed while down"),
        "after": array(
            string(minLength=1),
            description="jobs (`session.job`, or `job` in the same session) whose processes "
            "must all be ready before this job starts; stopping all stops it first",
        ),
        "ready": nullable(ref("ReadyCheck")),
        "notify": boolean(
            description="each process gets its own $NOTIFY_SOCKET (sd_notify); READY=1 makes it "
            "ready, STATUS= shows in its info, MAINPID= is followed; `ready` may only set deadline"
        ),
        "watchdog_sec": number(
            minimum=0, description="with notify: restart a process silent (no WATCHDOG=1) this long"
        ),
        "health": nullable(ref("HealthCheck")),
        "timeout": number(
            minimum=0, description="a one-off run still going after this is stopped (`timeout`)"
        ),
    }
    return obj(props, required, additional=not closed)


def process_stats() -> Schema:
    """psutil figures of one process; each is null when it could not be read."""
    figures = {
        "cpu": nullable(number(description="% of one CPU since the previous sample")),
        "mem": nullable(number(description="% of the machine's memory")),
        "rss": nullable(integer()),
        "vms": nullable(integer()),
        "mem_info1": nullable(integer(description="0.5's name for rss")),
        "mem_info2": nullable(integer(description="0.5's name for vms")),
        "threads": nullable(integer()),
        "fds": nullable(integer()),
        "uptime": nullable(number()),
        "ctime": nullable(number(description="user + system CPU seconds")),
        "nice": nullable(integer()),
        "username": nullable(string()),
        "pid": integer(),
        "os_pid": nullable(integer()),
        "name": string(),
    }
    return obj(figures, ("pid", "os_pid", "name"), additional=True)


def check_schema(verb: str, options: dict[str, float], description: str) -> Schema:
    """A readiness or health check: its kinds, and its options with their defaults."""
    props: dict[str, Schema] = {
        "http": string(pattern="^[Hh][Tt][Tt][Pp][Ss]?://", description=f"{verb} on a 2xx"),
        "tcp": string(minLength=1, description=f"HOST:PORT; {verb} once it accepts"),
        "exec": any_of(
            string(minLength=1),
            array(string(), minItems=1),
            description=f"a command run without a shell; {verb} on exit 0",
        ),
    }
    for name, default in options.items():
        if name == "failures":
            props[name] = integer(minimum=1, default=default)
        else:
            props[name] = number(exclusiveMinimum=True, minimum=0, default=default)
    return obj(props, description=description)


def schemas() -> dict[str, Schema]:
    permissions = {
        "admin": boolean(),
        "create_key": boolean(),
        "create_user": boolean(),
        "manage": name_list("`*`, a session or `session.job`"),
        "write": name_list("`*`, a session or `session.job`"),
        "read": name_list("`*`, a session or `session.job`"),
    }
    user_fields = {
        "username": string(pattern="^[A-Za-z0-9_.@-]{1,64}$"),
        "password": string(minLength=1, maxLength=MAX_PASSWORD),
        "user_type": integer(enum=[0, 1], description="0 admin, 1 user"),
    }
    return {
        "Error": obj({"error": string(), "errno": integer()}, ("error", "errno")),
        "Ok": obj({"ok": boolean(enum=[True])}, ("ok",)),
        "JobConfig": job_config(("name", "cmd")),
        "JobConfigUpdate": job_config(("cmd",)),
        "LoadedJobConfig": job_config(("name", "cmd"), closed=False),
        "Flapping": obj(
            {
                "attempts": integer(minimum=1),
                "window": number(minimum=0),
                "retry_in": number(minimum=0),
                "max_retry": integer(minimum=0),
            }
        ),
        "Backoff": obj(
            {
                "initial": number(exclusiveMinimum=True, minimum=0),
                "factor": number(minimum=1),
                "max": number(minimum=0),
            }
        ),
        "ReadyCheck": check_schema(
            "ready",
            {"interval": 0.5, "timeout": 2, "deadline": 60},
            "a readiness check: exactly one of http, tcp, exec. Variables "
            "($GAFFER_INDEX, $PORT, $((8000 + GAFFER_INDEX))) expand per process; a process "
            "not ready by the deadline is stopped and counts as a failed start",
        ),
        "HealthCheck": check_schema(
            "passes",
            {"interval": 10, "timeout": 2, "failures": 3},
            "a liveness check run every interval once the process is ready: exactly "
            "one of http, tcp, exec; `failures` failed attempts in a row restart the process "
            "(exit reason `health`)",
        ),
        "Slot": obj(
            {
                "index": integer(),
                "status": string(),
                "pid": nullable(integer()),
                "state": nullable(string(enum=list(ALL_STATES))),
                "failures": integer(),
                "next_start": nullable(number()),
            },
            ("index", "status", "pid"),
            additional=True,
        ),
        "JobInfo": obj(
            {
                "name": string(),
                "active": boolean(),
                "running": integer(),
                "ready": integer(),
                "running_out": integer(description="one-off runs (commit) still alive"),
                "max_processes": integer(),
                "numprocesses": integer(),
                "processes": array(integer()),
                "slots": array(ref("Slot")),
                "restarts": integer(),
                "exits_by_reason": obj({}, additional=integer()),
                "history": array(obj({}, additional=True)),
                "config": ref("LoadedJobConfig"),
                "next_run": nullable(number(description="epoch of the next scheduled run")),
                "waiting": nullable(
                    string(description="why a started job has not started its processes yet")
                ),
            },
            ("name", "active", "running", "running_out", "max_processes", "processes", "config"),
            additional=True,
        ),
        "JobStatus": obj(
            {
                "name": string(),
                "active": boolean(),
                "numprocesses": integer(),
                "running": integer(),
                "ready": integer(),
                "restarts": integer(),
                "stopping": integer(description="replaced or scaled-away processes still stopping"),
                "description": string(),
                "tags": array(string()),
                "version": string(),
                "next_run": nullable(number(description="epoch of the next scheduled run")),
                "waiting": nullable(
                    string(description="why a started job has not started its processes yet")
                ),
                "processes": array(
                    obj(
                        {
                            "pid": nullable(integer()),
                            "os_pid": nullable(integer()),
                            "index": integer(),
                            "state": nullable(string()),
                            "reason": nullable(string()),
                            "ready": boolean(description="running, and its readiness check passed"),
                            "healthy": nullable(
                                boolean(description="its last health check passed; null: none yet")
                            ),
                            "status": nullable(string(description="its sd_notify STATUS= text")),
                            "once": boolean(description="a one-off run (commit)"),
                            "uptime": nullable(number()),
                            "slot": nullable(string()),
                            "restarts": integer(),
                            "next_start": nullable(number()),
                            "cpu": nullable(number()),
                            "mem": nullable(number()),
                            "rss": nullable(integer()),
                        },
                        ("index", "restarts"),
                    )
                ),
            },
            ("name", "active", "numprocesses", "running", "ready", "processes"),
        ),
        "ProcessStats": process_stats(),
        "JobStats": obj(
            {
                "name": string(),
                "stats": array(ref("ProcessStats")),
                **{k: number() for k in ("cpu", "max_cpu", "min_cpu", "mem", "max_mem", "min_mem")},
            },
            ("name", "stats", "cpu", "mem"),
            additional=True,
        ),
        "ProcessInfo": obj(
            {
                "pid": integer(),
                "name": string(),
                "index": integer(description="its slot; -1 for a one-off run"),
                "cmd": string(),
                "args": array(string()),
                "env": obj({}, additional=string()),
                "uid": nullable(integer()),
                "gid": nullable(integer()),
                "os_pid": nullable(integer()),
                "create_time": nullable(number()),
                "commited": boolean(description="a one-off run (0.5's spelling)"),
                "redirect_output": array(string()),
                "redirect_input": boolean(),
                "custom_streams": array(string()),
                "active": boolean(),
                "state": string(enum=list(ALL_STATES)),
                "reason": nullable(string()),
                "ready": boolean(description="running, and its readiness check passed"),
                "ready_error": nullable(string(description="the last readiness check's failure")),
                "healthy": nullable(boolean()),
                "health_error": nullable(string(description="the last health check's failure")),
                "status": nullable(string(description="its sd_notify STATUS= text")),
                "main_pid": nullable(integer(description="MAINPID= it reported")),
                "watchdog_usec": nullable(integer()),
                "notify_socket": nullable(string(description="its $NOTIFY_SOCKET")),
                "uptime": nullable(number()),
                "exit_status": nullable(integer()),
                "term_signal": nullable(integer()),
                "term_signal_name": nullable(string()),
            },
            ("pid", "name", "cmd", "args", "os_pid", "commited", "active"),
            additional=True,
        ),
        "Permissions": obj(permissions),
        "ApiKey": obj(
            {
                "key": string(description="the key's id (its value is shown only once)"),
                "label": string(),
                "permissions": ref("Permissions"),
                "parent": nullable(string()),
                "user": nullable(string()),
                "created": number(),
                "keys": array(ref("ApiKey"), description="with include_keys=true"),
            },
            ("key", "label", "permissions", "parent", "user", "created"),
        ),
        "NewKey": obj(
            {
                "label": string(maxLength=MAX_LABEL),
                "permissions": ref("Permissions"),
                "parent": string(description="a key id; default: the caller's key"),
            }
        ),
        "CreatedKey": obj(
            {"ok": boolean(enum=[True]), "api_key": string(), "key": string()},
            ("ok", "api_key", "key"),
        ),
        "User": obj(
            {"username": string(), "user_type": integer(enum=[0, 1]), "key": nullable(string())},
            ("username", "user_type", "key"),
            additional=True,
            description="extra fields given at creation are returned as they were stored",
        ),
        "NewUser": obj(
            {
                **user_fields,
                "key": string(description="an existing key id for the user"),
                "permissions": ref("Permissions"),
            },
            ("username", "password"),
            additional=True,
            description="other fields are stored with the user",
        ),
        "UserUpdate": obj(
            user_fields,
            additional=True,
            description="`username`, if given, must be the user's; other fields are stored",
        ),
        "UserResult": obj({"ok": boolean(enum=[True]), "user": ref("User")}, ("ok", "user")),
        "Signal": obj(
            {"signal": int_or_str(description="15, 'TERM' or 'SIGTERM'")},
            ("signal",),
            additional=True,
        ),
    }


# -- parameters and responses ------------------------------------------------------


def path_param(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema,
    }


def query_param(name: str, schema: Schema, description: str, **kw: Any) -> Schema:
    return {"name": name, "in": "query", "description": description, "schema": schema, **kw}


def header_param(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "header", "description": description, "schema": schema}


def segment() -> Schema:
    return string(minLength=1, pattern="^[^/]+$")


def parameters() -> dict[str, Schema]:
    flag = string(enum=["true", "false", "1", "0", "yes", "no"])
    return {
        "sessionid": path_param("sessionid", segment(), "a session"),
        "job": path_param("job", segment(), "a job of the session"),
        "pid": path_param(
            "pid", integer(minimum=0, pattern="^[0-9]+$"), "internal process id (not os_pid)"
        ),
        "stream": path_param("stream", segment(), "an output stream label (stdout, stderr...)"),
        "key": path_param("key", segment(), "an API key's id"),
        "username": path_param("username", segment(), "a user name"),
        "wait": query_param("wait", flag, "answer once the change is done (default false)"),
        "tag": query_param(
            "tag",
            array(string()),
            "only jobs with this tag (repeatable: jobs with any of them)",
            explode=True,
        ),
        "LastEventID": header_param(
            "Last-Event-ID", string(), "resume after this event id (SSE reconnection)"
        ),
    }


def param(name: str) -> Schema:
    return {"$ref": f"#/components/parameters/{name}"}


ERRORS = {
    400: "bad request: the reason names the offending field",
    401: "an API key is required",
    403: "unknown API key, or the key does not allow this",
    404: "no such job, session, process, key or user",
    409: "conflict: already exists, or not in a state that allows it",
    413: "body over the size limit",
}


def error_responses() -> dict[str, Schema]:
    return {
        f"E{code}": {"description": text, "content": {JSON: {"schema": ref("Error")}}}
        for code, text in ERRORS.items()
    }


def error_refs(*codes: int, head: bool = False) -> dict[str, Schema]:
    """The shared error responses; a HEAD answer has no body."""
    if head:
        return {str(c): {"description": ERRORS[c]} for c in codes}
    return {str(c): {"$ref": f"#/components/responses/E{c}"} for c in codes}


def reply(schema: Schema, description: str = "OK", media: str = JSON, **kw: Any) -> Schema:
    return {"description": description, "content": {media: {"schema": schema}}, **kw}


def body(schema: Schema, required: bool = True) -> Schema:
    return {"required": required, "content": {JSON: {"schema": schema}}}


def header(schema: Schema, description: str) -> Schema:
    return {"description": description, "schema": schema}


def operation(
    tag: str,
    summary: str,
    answer: Schema,
    *,
    status: int = 200,
    errors: tuple[int, ...] = (),
    params: tuple[str | Schema, ...] = (),
    request: Schema | None = None,
    security: list[dict[str, list[str]]] = KEYED,
    description: str | None = None,
    more: dict[str, Schema] | None = None,
) -> Schema:
    """One operation answering ``answer`` with ``status`` on success, else one
    of ``errors``; a keyed one may also answer 401 and 403, one with a body
    400 and 413."""
    out: Schema = {"tags": [tag], "summary": summary}
    if description:
        out["description"] = description
    if params:
        out["parameters"] = [param(p) if isinstance(p, str) else p for p in params]
    codes = list(errors)
    if request is not None:
        out["requestBody"] = request
        codes += [400, 413]
    if security is KEYED:
        codes += [401, 403]
    out["responses"] = {str(status): answer, **error_refs(*sorted(set(codes))), **(more or {})}
    out["security"] = security
    return out


def head(tag: str, summary: str, *codes: int, params: tuple[str, ...]) -> Schema:
    """A HEAD: 200 when the thing exists, an error status (no body) otherwise."""
    op = operation(tag, summary, {"description": "it exists"}, params=params)
    op["responses"].update(error_refs(*codes, 401, 403, head=True))
    return op


# -- paths -----------------------------------------------------------------------


def daemon_paths() -> dict[str, Schema]:
    names = array(string())
    reload_result = obj(
        {
            "ok": boolean(),
            "source": nullable(string()),
            "time": number(),
            "error": nullable(string()),
            "loaded": names,
            "unloaded": names,
            "updated": names,
            "scaled": names,
            "unchanged": names,
            "failed": obj({}, additional=string()),
        },
        ("ok",),
        additional=True,
    )
    op = partial(operation, "daemon", security=PUBLIC)
    document = obj(
        {"openapi": string(), "info": obj({}, additional=True), "paths": obj({}, additional=True)},
        ("openapi", "info", "paths"),
        additional=True,
    )
    return {
        "/": {
            "get": op("Welcome", reply(record(welcome=string(enum=["gaffer"]), version=string())))
        },
        "/ping": {"get": op("Liveness", reply(string(enum=["OK"]), media=TEXT))},
        "/version": {
            "get": op(
                "Daemon version", reply(record(name=string(enum=["gaffer"]), version=string()))
            )
        },
        "/openapi.json": {"get": op("This OpenAPI description", reply(document))},
        "/metrics": {
            "get": operation(
                "daemon",
                "Prometheus metrics",
                reply(string(), "Prometheus text exposition format", media=TEXT),
                description="Needs read access to every job.",
            )
        },
        "/logs/reopen": {
            "post": operation(
                "daemon",
                "Reopen the jobs' log files (what SIGUSR1 does)",
                reply(ref("Ok"), "accepted: the files are reopened before the next write"),
                status=202,
                errors=(409,),
                description="409 when the daemon writes no log files. Needs manage on every job.",
            )
        },
        "/reexec": {
            "post": operation(
                "daemon",
                "Re-execute gafferd in place (what SIGUSR2 does)",
                reply(ref("Ok"), "accepted: gafferd re-executes itself right after answering"),
                status=202,
                errors=(409,),
                description="Same PID; every child keeps running, supervised, its output "
                "still captured. 409 when not run by gafferd. Needs manage on every job.",
            )
        },
        "/reload": {
            "get": operation(
                "daemon",
                "How the last config reload went",
                reply(reload_result),
                errors=(404,),
                description="404 until a reload has happened. Needs read access to every job.",
            ),
            "post": operation(
                "daemon",
                "Re-read the config file and apply the difference (what SIGHUP does)",
                reply(reload_result),
                errors=(409,),
                more={
                    "409": reply(
                        obj(
                            {"error": string(), "errno": integer(), "reload": reload_result},
                            ("error", "errno"),
                            additional=True,
                        ),
                        "the reload failed (or there is no config file): nothing changed",
                    )
                },
                description="Needs manage on every job.",
            ),
        },
    }


def job_paths() -> dict[str, Schema]:
    op = partial(operation, "jobs")
    session = ("sessionid",)
    job = ("sessionid", "job")
    ok = ref("Ok")
    accepted = reply(ok, "accepted: the change is under way")
    numprocesses = record(numprocesses=integer(minimum=0))
    scale = obj(
        {"scale": int_or_str(description="N or '+N' adds, -N or '-N' removes, '=N' sets")},
        ("scale",),
        additional=True,
    )
    commit = obj(
        {
            "graceful_timeout": number(description="seconds; 0 keeps the job's"),
            "env": obj({}, additional=string()),
            "args": array(string(), description="replace the job's args"),
        }
    )
    state = string(enum=["0", "1", "2"], description="1 start, 0 stop, 2 reload")
    state_body = {
        "required": True,
        "content": {
            TEXT: {"schema": state},
            JSON: {"schema": any_of(integer(enum=[0, 1, 2]), state)},
        },
    }
    return {
        "/sessions": {
            "get": op(
                "Sessions with a job the key may read", reply(record(sessions=array(string())))
            )
        },
        "/status": {
            "get": op(
                "Every job the key may read, with a row per process (what `gaffer ps` shows)",
                reply(record(jobs=array(ref("JobStatus")))),
                params=(
                    query_param(
                        "name",
                        array(string(minLength=1)),
                        "only this session or `session.job` (repeatable)",
                        explode=True,
                    ),
                    query_param(
                        "stats",
                        string(enum=["0", "1", "true", "false"]),
                        "include CPU and memory (default 1)",
                    ),
                    "tag",
                ),
                errors=(400,),
            )
        },
        "/jobs": {
            "get": op(
                "Jobs the key may read, as `session.job`",
                reply(record(jobs=array(string()))),
                params=("tag",),
            )
        },
        "/jobs/{sessionid}": {
            "get": op(
                "Jobs of a session",
                reply(record(sessionid=string(), jobs=array(string()))),
                errors=(404,),
                params=(*session, "tag"),
            ),
            "post": op(
                "Load a job into the session",
                reply(ok, "loaded (and started unless start is false)"),
                errors=(409,),
                params=session,
                request=body(ref("JobConfig")),
                description="409 when the job exists (or the daemon is stopping).",
            ),
        },
        "/jobs/{sessionid}/{job}": {
            "head": head("jobs", "Does the job exist?", 400, 404, params=job),
            "get": op("Job info", reply(ref("JobInfo")), errors=(400, 404), params=job),
            "put": op(
                "Update the job's config",
                reply(ok, "updated (or the update is under way)"),
                status=201,
                errors=(404, 409),
                params=(*job, "wait"),
                request=body(ref("JobConfigUpdate")),
                description=(
                    "`name` defaults to the path's and must match it; `start` (default "
                    "true) also starts a stopped job. A running job is rolled over to the "
                    "new config; with wait=true the answer comes once that is done (409 if "
                    "a new process failed to start)."
                ),
            ),
            "delete": op(
                "Unload the job (its processes are stopped)",
                reply(ok, "unloaded"),
                errors=(400, 404),
                params=(*job, "wait"),
            ),
        },
        "/jobs/{sessionid}/{job}/stats": {
            "get": op(
                "Resource use of the job's processes",
                reply(ref("JobStats")),
                errors=(400, 404),
                params=job,
            )
        },
        "/jobs/{sessionid}/{job}/numprocesses": {
            "get": op(
                "Wanted number of processes", reply(numprocesses), errors=(400, 404), params=job
            ),
            "post": op(
                "Scale the job",
                reply(numprocesses, "the new wanted number"),
                errors=(404, 409),
                params=job,
                request=body(scale),
            ),
        },
        "/jobs/{sessionid}/{job}/pids": {
            "get": op(
                "Pids of the job's supervised processes",
                reply(record(pids=array(integer()))),
                errors=(400, 404),
                params=job,
            )
        },
        "/jobs/{sessionid}/{job}/state": {
            "get": op(
                "1 if the job is active, else 0",
                reply(string(enum=["0", "1"]), media=TEXT),
                errors=(400, 404),
                params=job,
            ),
            "post": op(
                "Start (1), stop (0) or reload (2) the job",
                accepted,
                status=202,
                errors=(404, 409),
                params=(*job, "wait"),
                request=state_body,
                description="The raw body is the digit, optionally in double quotes. With "
                "`wait`, a stop or reload answers 200 once done; a reload whose new "
                "process fails to start answers 409 (the old processes keep running).",
                more={"200": reply(ok, "done (with wait)")},
            ),
        },
        "/jobs/{sessionid}/{job}/signal": {
            "post": op(
                "Signal every live process of the job",
                accepted,
                status=202,
                errors=(404, 409),
                params=job,
                request=body(ref("Signal")),
            )
        },
        "/jobs/{sessionid}/{job}/commit": {
            "post": op(
                "Start a one-off process with the job's config (never restarted)",
                reply(record(pid=integer()), "its internal pid"),
                errors=(404, 409),
                params=job,
                request=body(commit, required=False),
            )
        },
    }


def run_paths() -> dict[str, Schema]:
    op = partial(operation, "runs")
    rid = path_param("id", integer(minimum=0, pattern="^[0-9]+$"), "a run record's id")
    run = obj(
        {
            "id": integer(),
            "job": string(),
            "pid": integer(),
            "os_pid": nullable(integer()),
            "once": boolean(description="a one-off run (commit)"),
            "started": nullable(number()),
            "ended": nullable(number(description="null while it runs")),
            "running": boolean(),
            "duration": nullable(number()),
            "exit_status": nullable(integer()),
            "term_signal": nullable(integer()),
            "reason": nullable(
                string(description="running, exited, killed, stopped, cancelled, start_failed...")
            ),
            "error": nullable(string()),
            "output": obj({}, additional=array(string()), description="last lines per stream"),
        },
        additional=True,
    )
    filters: tuple[str | Schema, ...] = (
        query_param("job", string(), "a job (S.J) or a session"),
        query_param("once", string(enum=["0", "1", "true", "false"]), "one-off runs only (1)"),
        query_param("reason", string(), "only runs that ended for this reason"),
        query_param("since", number(minimum=0), "still running or ended at/after (epoch s)"),
        query_param("limit", integer(minimum=1, maximum=1000), "at most (default 100)"),
    )
    kept = "Kept by gafferd in `<state_dir>/runs.db`; 404 elsewhere."
    return {
        "/runs": {
            "get": op(
                "Run records of the jobs the key may read, newest first",
                reply(record(runs=array(run))),
                errors=(400, 404),
                params=filters,
                description=kept,
            )
        },
        "/runs/{id}": {
            "get": op("One run record", reply(run), errors=(404,), params=(rid,)),
            "delete": op(
                "Cancel a running one-off run: stop it gracefully, record `cancelled`",
                reply(run, "its record, once it has stopped"),
                errors=(404, 409),
                params=(rid,),
            ),
        },
    }


def process_paths() -> dict[str, Schema]:
    op = partial(operation, "processes")
    pid = ("pid",)
    return {
        "/pids": {
            "get": op(
                "Pids of every process the key may read", reply(record(pids=array(integer())))
            )
        },
        "/{pid}": {
            "head": head("processes", "Does the process exist?", 404, params=pid),
            "get": op("Process info", reply(ref("ProcessInfo")), errors=(404,), params=pid),
            "delete": op(
                "Stop the process (a supervised one is replaced in its slot)",
                reply(ref("Ok"), "stopping"),
                status=202,
                errors=(404,),
                params=pid,
            ),
        },
        "/{pid}/signal": {
            "post": op(
                "Signal the process",
                reply(ref("Ok"), "sent"),
                status=202,
                errors=(404, 409),
                params=pid,
                request=body(ref("Signal")),
                description="409 when the process is not running.",
            )
        },
        "/{pid}/stats": {
            "get": op(
                "Resource use of the process",
                reply(record(stats=ref("ProcessStats"))),
                errors=(404,),
                params=pid,
            )
        },
    }


def stream_paths() -> dict[str, Schema]:
    op = partial(operation, "streams", errors=(400, 404))
    offset = integer(minimum=0)
    output = {
        "description": (
            "continuous: the bytes as they come (application/octet-stream) until the "
            "stream ends; eventsource: `output` events whose data is "
            '`{"data": text, "offset": N}` and an `eof` event; longpoll: what is '
            "available after `offset`, waiting up to `timeout` seconds for more."
        ),
        "headers": {
            "X-Gaffer-Offset": header(
                integer(),
                "continuous/eventsource: offset of the first byte sent; "
                "longpoll: the offset to ask for next",
            ),
            "X-Gaffer-Start": header(integer(), "longpoll: offset of the first byte sent"),
        },
        "content": {OCTETS: {"schema": string(format="binary")}, SSE: {"schema": string()}},
    }
    events = reply(
        string(),
        "Server-Sent Events: each event's type is the event's, its id the event's "
        "sequence number and its data the JSON payload. `gaffer:gap` says that "
        "events after Last-Event-ID are no longer kept.",
        media=SSE,
    )
    feed = string(enum=["continuous", "longpoll", "eventsource"])
    topics = (
        "EVENTS (default), EVENTS:<prefix>, JOB:<job>, PROCESS:<pid>, "
        "STREAM:<pid>[.<label>] or a bus prefix; repeat for several"
    )
    return {
        "/streams/{pid}/{stream}": {
            "get": op(
                "Follow a process's output stream",
                output,
                params=(
                    "pid",
                    "stream",
                    query_param("feed", feed, "how to deliver (default continuous)"),
                    query_param("offset", offset, "bytes since the stream began to start at"),
                    query_param(
                        "replay", offset, "start this many bytes back (of the last 64 KiB)"
                    ),
                    query_param(
                        "timeout",
                        number(minimum=0, maximum=300),
                        "longpoll: seconds to wait for output (default 30)",
                    ),
                    "LastEventID",
                ),
                description="404 for a process, or a stream of it, that does not exist.",
            )
        },
        "/events": {
            "get": op(
                "Events as Server-Sent Events",
                events,
                params=(
                    query_param("topic", array(string(minLength=1)), topics, explode=True),
                    query_param("last_event_id", string(), "like the Last-Event-ID header"),
                    query_param(
                        "name",
                        array(string(minLength=1)),
                        "only events of this session or `session.job` (repeatable)",
                        explode=True,
                    ),
                    "LastEventID",
                ),
                description="A key sees only the events of the jobs it may read.",
            )
        },
    }


def ws_refusal(description: str) -> Schema:
    """Tornado refuses a bad handshake in text; gaffer's own refusals are JSON."""
    return {
        "description": description,
        "content": {JSON: {"schema": ref("Error")}, "text/html": {"schema": string()}},
    }


def websocket(summary: str, description: str, params: tuple[str | Schema, ...] = ()) -> Schema:
    op = operation(
        "channels",
        summary,
        {"description": "switching to the websocket protocol"},
        status=101,
        params=params,
        description=description,
        more={
            "400": ws_refusal("not a websocket upgrade request (text), or a bad parameter (JSON)"),
            "403": ws_refusal("a cross-origin request (text), or an unknown API key (JSON)"),
        },
    )
    op["responses"].pop("401")  # a missing key is asked for with a first AUTH: frame
    return op


def channel_paths() -> dict[str, Schema]:
    pubsub = websocket(
        "Pub/sub and commands (websocket)",
        "JSON text frames: `{event: NOP}`, `{event: SUB|UNSUB, data: {topic}}`, "
        "`{event: CMD, data: {identity, name, args, kwargs}}`; without a key header, "
        "the first frame is `AUTH:<key>`. Replies are `gaffer:subscription_success`, "
        "`gaffer:subscription_error`, `gaffer:command_success`, `gaffer:command_error` "
        "and `gaffer:event` frames.",
    )
    mode = query_param(
        "mode", string(enum=["1", "2", "3"]), "1 read the output, 2 write, 3 both (default)"
    )
    io = (
        "Frames `V1 <type> <msgid>\\0<body>`, type message, response or error. A client "
        "message is written to the process (stdin, or the named custom stream) and "
        "acknowledged with a response `OK`; output arrives as message frames. Without a "
        "key header, the first frame's body is `AUTH:<key>`."
    )
    return {
        "/channel": {"get": pubsub},
        "/channel/websocket": {"get": pubsub},
        "/{pid}/channel": {
            "get": websocket("A process's stdin and output (websocket)", io, ("pid", mode))
        },
        "/{pid}/channel/{stream}": {
            "get": websocket("A process's named stream (websocket)", io, ("pid", "stream", mode))
        },
    }


def auth_paths() -> dict[str, Schema]:
    op = partial(operation, "auth")
    new_key = {"X-Api-Key": header(string(), "the new key's value (shown only once)")}
    key = ("key",)
    user = ("username",)
    include_keys = query_param(
        "include_keys", string(enum=["true", "false"]), "also list its subkeys"
    )
    return {
        "/auth": {
            "get": op(
                "Log in: a new API key for the user (HTTP Basic)",
                reply(record(api_key=string()), headers=new_key),
                errors=(401, 403),
                security=[{"basicAuth": []}],
                description="403 when the user has no key.",
            )
        },
        "/keys": {
            "get": op(
                "Keys: every key for an admin, the key's descendants for create_key",
                reply(record(keys=array(ref("ApiKey")))),
            ),
            "post": op(
                "Create a key (no broader than the caller's)",
                reply(
                    ref("CreatedKey"),
                    "created",
                    headers={**new_key, "Location": header(string(), "/keys/<id>")},
                ),
                errors=(404,),
                request=body(ref("NewKey")),
                description="404 for an unknown parent.",
            ),
        },
        "/keys/{key}": {
            "head": head("auth", "Does the key exist?", 404, params=key),
            "get": op("A key", reply(ref("ApiKey")), errors=(404,), params=(*key, include_keys)),
            "delete": op(
                "Delete a key and its descendants",
                reply(record(ok=boolean(enum=[True]), deleted=array(string())), "deleted"),
                errors=(404,),
                params=key,
            ),
        },
        "/users": {
            "get": op("Users (admin)", reply(record(users=array(ref("User"))))),
            "post": op(
                "Create a user",
                reply(ref("UserResult"), "created"),
                errors=(404, 409),
                request=body(ref("NewUser")),
                description="Without `key`, a key is created for the user from `permissions`.",
            ),
        },
        "/users/{username}": {
            "head": head("auth", "Does the user exist?", 404, params=user),
            "get": op("A user", reply(ref("User")), errors=(404,), params=user),
            "put": op(
                "Update a user",
                reply(ref("UserResult"), "updated"),
                errors=(404,),
                params=user,
                request=body(ref("UserUpdate")),
            ),
            "delete": op("Delete a user", reply(ref("Ok")), errors=(404,), params=user),
        },
        "/users/{username}/password": {
            "put": op(
                "Set a user's password",
                reply(ref("Ok")),
                errors=(404,),
                params=user,
                request=body(
                    obj(
                        {"password": string(minLength=1, maxLength=MAX_PASSWORD)},
                        ("password",),
                        True,
                    )
                ),
            )
        },
        "/users/{username}/key": {
            "put": op(
                "Give a user another existing key",
                reply(ref("Ok")),
                errors=(404,),
                params=user,
                request=body(obj({"key": string(minLength=1)}, ("key",), True)),
            )
        },
    }


def spec() -> dict[str, Any]:
    """The whole OpenAPI 3.0.3 document."""
    return {
        "openapi": "3.0.3",
        "info": {"title": "gaffer", "version": __version__, "description": DESCRIPTION},
        "tags": [
            {"name": "daemon"},
            {"name": "jobs"},
            {"name": "processes"},
            {"name": "runs", "description": "run records (gafferd)"},
            {"name": "streams", "description": "long-lived responses"},
            {"name": "channels", "description": "websockets"},
            {"name": "auth", "description": "API keys and users"},
        ],
        "paths": {
            **daemon_paths(),
            **job_paths(),
            **process_paths(),
            **run_paths(),
            **stream_paths(),
            **channel_paths(),
            **auth_paths(),
        },
        "components": {
            "schemas": schemas(),
            "parameters": parameters(),
            "responses": error_responses(),
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
                "basicAuth": {"type": "http", "scheme": "basic"},
            },
        },
        "security": KEYED,
    }
