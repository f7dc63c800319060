"""The sandbox harness: runs INSIDE the sandbox and supervises one run of untrusted code.

It is started as ``python3 -I -c <this file's source> [--preload m1,m2]`` by a backend,
reads one JSON job from stdin, forks a child that applies rlimits and runs the code, keeps
the child's stdout/stderr within their caps, enforces the wall-clock limit, and writes
one JSON report to its own stdout. Standard library only: it runs on the sandbox's
Python, not dagentic's. Only JSON crosses the boundary.

A warm sandbox starts the harness ahead of time (``--preload`` imports numpy/pandas if
present), and it waits on stdin for its job.
"""

import binascii
import contextlib
import errno
import json
import os
import resource
import select
import signal
import sys
import time

# Started with -S (no `site`, 3 ms faster): the system's package dirs by hand.
_VERSION = "python%d.%d" % sys.version_info[:2]
for _path in (
    f"/usr/local/lib/{_VERSION}/dist-packages",
    "/usr/lib/python3/dist-packages",
    f"/usr/lib/{_VERSION}/dist-packages",
):
    if os.path.isdir(_path) and _path not in sys.path:
        sys.path.append(_path)

MAX_FILES = 100
DRAIN = 0.5  # seconds to read what is left in the pipes after the code's main process ends
CGROUP_COUNTERS = {  # (file, key) pairs, cgroup v2 then v1
    "oom": [
        ("/sys/fs/cgroup/memory.events", "oom_kill"),
        ("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill"),
    ],
    "pids": [("/sys/fs/cgroup/pids.events", "max"), ("/sys/fs/cgroup/pids/pids.events", "max")],
}


def _counter(name):
    for path, key in CGROUP_COUNTERS[name]:
        try:
            with open(path) as handle:
                for line in handle:
                    parts = line.split()
                    if len(parts) == 2 and parts[0] == key:
                        return int(parts[1])
        except (OSError, ValueError):
            continue
    return None


def _safe_name(name):
    parts = name.replace("\\", "/").split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"input file name {name!r} must be a relative path without '..'")
    return "/".join(parts)


def _write_inputs(files):
    for name, encoded in (files or {}).items():
        path = _safe_name(name)
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(binascii.a2b_base64(encoded))


def _child(job, out_w, err_w, status_w):
    """In the forked child: limits, then the code. Never returns."""
    limits = job["limits"]
    exit_code = 1
    status = {}
    own_pid = os.getpid()
    try:
        os.setsid()
        cpu = max(1, int(limits["cpu_time"] + 0.999))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits["open_files"],) * 2)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if job.get("rlimit_nproc"):
            resource.setrlimit(resource.RLIMIT_NPROC, (limits["pids"],) * 2)
        if job.get("rlimit_memory"):
            resource.setrlimit(resource.RLIMIT_AS, (limits["memory"],) * 2)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        for fd in (null, out_w, err_w):
            os.close(fd)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", encoding="utf-8", errors="replace", closefd=False)
        sys.stderr = open(2, "w", encoding="utf-8", errors="replace", closefd=False)
        namespace = {"__name__": "__main__", "__builtins__": __builtins__}
        namespace.update(job.get("vars") or {})
        try:
            exec(compile(job["code"], "main.py", "exec"), namespace)
            exit_code = 0
        except SystemExit as exc:
            code = exc.code
            exit_code = code if isinstance(code, int) else (0 if code is None else 1)
            if not isinstance(code, int) and code is not None:
                print(code, file=sys.stderr)
        except BaseException as exc:  # the code's own failure, reported as data
            status["exception"] = {
                "type": type(exc).__name__,
                "message": str(exc)[:2000],
                "errno": getattr(exc, "errno", None),
            }
            # The code is done: close what it left open (it may have used up every fd).
            os.closerange(3, status_w)
            os.closerange(status_w + 1, limits["open_files"])
            if os.getpid() == own_pid:  # forked copies of the code stay quiet
                import traceback

                # Skip the harness's own frame: the traceback starts in the code.
                traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)
        if "result" in namespace:
            try:
                text = json.dumps(namespace["result"], allow_nan=False)
                if len(text) > limits["output_bytes"]:
                    status["result_error"] = (
                        "result is larger than %d bytes of JSON" % (limits["output_bytes"])
                    )
                else:
                    status["result"] = text
            except (TypeError, ValueError, RecursionError) as exc:
                status["result_error"] = f"result is not JSON-serializable: {exc}"
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException as exc:  # a failure of the harness itself, in the child
        status["harness_error"] = f"{type(exc).__name__}: {exc}"
    finally:
        try:
            if os.getpid() == own_pid:  # not from processes the code forked
                os.write(status_w, json.dumps(status).encode())
        finally:
            os._exit(exit_code)


def _read_status(fd):
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        return {"harness_error": "the code's status channel was corrupted"}


def _collect_files(inputs, limit, want_content):
    files = []
    if not os.listdir("."):
        return files
    import hashlib  # 3 ms to load: only when there are files

    for root, dirs, names in os.walk(".", followlinks=False):
        dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(root, d)))
        for name in sorted(names):
            path = os.path.normpath(os.path.join(root, name))
            if len(files) >= MAX_FILES:
                return files
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue  # symlinks and the unreadable are never followed
            with os.fdopen(fd, "rb") as handle:
                info = os.fstat(handle.fileno())
                if info.st_mode & 61440 != 32768:
                    continue  # only regular files
                digest = hashlib.sha256()
                content = bytearray()
                while True:
                    chunk = handle.read(65536)
                    if not chunk:
                        break
                    digest.update(chunk)
                    if want_content and len(content) < limit:
                        content += chunk[: limit - len(content)]
                sha = digest.hexdigest()
            if inputs.get(path) == sha:
                continue  # an input left as it was
            entry = {"name": path, "size": info.st_size, "sha256": sha}
            if want_content and info.st_size <= limit:
                try:
                    entry["content"] = bytes(content).decode("utf-8")
                    entry["encoding"] = "utf-8"
                except UnicodeDecodeError:
                    entry["content"] = binascii.b2a_base64(bytes(content), newline=False).decode()
                    entry["encoding"] = "base64"
            files.append(entry)
    return files


def _exited_by(pid, deadline):
    """Wait until the child exits or the deadline passes; True if it exited."""
    pidfd = _pidfd(pid)
    try:
        while True:
            left = deadline - time.monotonic()
            if pidfd is not None:
                if select.select([pidfd], [], [], max(left, 0))[0]:
                    return True
            elif os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                return True
            if left <= 0:
                return False
            if pidfd is None:
                time.sleep(min(0.002, left))
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _pidfd(pid):
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _end_leftovers(pid, job):
    """Kill the code's process group and, alone in our own pid namespace, every process
    the code left behind (double-forked daemons included)."""
    _kill(pid)
    if job.get("sweep"):
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass


def _protect_self():
    """Make the harness non-dumpable: code running as the same uid can then neither
    open /proc/<harness>/fd/* (to forge the report) nor ptrace it."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except Exception:
        pass  # no ctypes: the host still bounds what a forged report can claim


def _cpu_used():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _kill(pid):
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        with contextlib.suppress(OSError):
            target()


def run(job):
    limits = job["limits"]
    cap = limits["output_bytes"]
    _write_inputs(job.get("files"))
    inputs = {}
    if job.get("files"):
        import hashlib

        for name, encoded in job["files"].items():
            inputs[_safe_name(name)] = hashlib.sha256(binascii.a2b_base64(encoded)).hexdigest()
    before = {name: _counter(name) for name in CGROUP_COUNTERS}
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    status_r, status_w = os.pipe()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        for fd in (out_r, err_r, status_r):
            os.close(fd)
        _child(job, out_w, err_w, status_w)
    for fd in (out_w, err_w, status_w):
        os.close(fd)

    _protect_self()
    buffers = {out_r: bytearray(), err_r: bytearray()}
    streams = dict(buffers)  # the ones still open
    truncated = {out_r: False, err_r: False}
    reason = detail = None
    deadline = start + limits["wall_time"]
    pidfd = _pidfd(pid)
    ended = None  # when the code's main process exited
    while streams:
        now = time.monotonic()
        left = deadline - now if ended is None else min(deadline, ended + DRAIN) - now
        if left <= 0:
            if ended is None:
                reason = "timeout"
                detail = "the wall-clock limit of {:g}s passed".format(limits["wall_time"])
            break
        watch = list(streams) + ([pidfd] if pidfd is not None and ended is None else [])
        ready, _, _ = select.select(watch, [], [], left)
        for fd in ready:
            if fd == pidfd:
                # The run is over when the code's main process is: end what it left
                # behind (forked copies may hold the pipes open), then read what is left.
                ended = time.monotonic()
                _end_leftovers(pid, job)
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                del streams[fd]
                continue
            buffer = streams[fd]
            room = cap - len(buffer)
            buffer += chunk[:room]
            if len(chunk) > room:
                truncated[fd] = True
                reason, detail = "output_limit", "the code wrote more than %d bytes" % cap
        if reason:
            break
    if pidfd is not None:
        os.close(pidfd)
    outputs = {fd: bytes(buffer) for fd, buffer in buffers.items()}
    if reason:
        _kill(pid)
    if not reason and not _exited_by(pid, deadline):
        reason = "timeout"
        detail = "the wall-clock limit of {:g}s passed".format(limits["wall_time"])
        _kill(pid)
    _, status_code = os.waitpid(pid, 0)
    duration = time.monotonic() - start
    if job.get("sweep"):
        # Alone in our own pid namespace: end every process the code left behind.
        with contextlib.suppress(OSError):
            os.kill(-1, signal.SIGKILL)
    status = _read_status(status_r)
    signalled = os.WIFSIGNALED(status_code)
    exit_code = None if signalled else os.WEXITSTATUS(status_code)
    exception = status.get("exception") or {}
    after = {name: _counter(name) for name in CGROUP_COUNTERS}
    grew = {
        name: None not in (before[name], after[name]) and after[name] > before[name]
        for name in CGROUP_COUNTERS
    }
    if reason is None:
        kind, number = exception.get("type"), exception.get("errno")
        message = exception.get("message", "")
        if grew["oom"] or kind == "MemoryError":
            reason = "oom"
            detail = "the code ran out of memory (limit {} MiB)".format(limits["memory"] // 2**20)
        elif (
            grew["pids"]
            or (kind == "BlockingIOError" and number == errno.EAGAIN)
            or (kind == "RuntimeError" and "can't start new thread" in message)
        ):
            reason, detail = (
                "pids",
                "the code hit the limit of %d processes and threads" % (limits["pids"]),
            )
        elif signalled and (
            os.WTERMSIG(status_code) == signal.SIGXCPU
            or (os.WTERMSIG(status_code) == signal.SIGKILL and _cpu_used() >= limits["cpu_time"])
        ):
            reason = "timeout"
            detail = "the CPU-time limit of {:g}s passed".format(limits["cpu_time"])
        elif signalled:
            reason, detail = "killed", "the code was killed by signal %d" % os.WTERMSIG(status_code)
        elif exit_code == 0:
            reason = "ok"
        else:
            reason, detail = "error", "the code exited with status %d" % exit_code
    report = {
        "exit_code": exit_code,
        "exit_reason": reason,
        "detail": detail,
        "stdout": outputs[out_r].decode("utf-8", errors="replace"),
        "stderr": outputs[err_r].decode("utf-8", errors="replace"),
        "stdout_truncated": truncated[out_r],
        "stderr_truncated": truncated[err_r],
        "duration": duration,
        "result_json": status.get("result"),
        "result_error": status.get("result_error") or status.get("harness_error"),
        "exception": exception or None,
        "files": _collect_files(inputs, cap, job.get("file_contents", False)),
    }
    return report


def main(argv):
    if "--preload" in argv:
        for module in ["ctypes", *argv[argv.index("--preload") + 1].split(",")]:
            try:
                __import__(module)
            except Exception:  # an optional speed-up only
                pass
    job = json.loads(sys.stdin.buffer.read())
    try:
        report = run(job)
    except Exception as exc:
        report = {"harness_error": f"{type(exc).__name__}: {exc}"}
    # One line: the host may stop reading at the newline, before the sandbox winds down.
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv)
