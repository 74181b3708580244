#!/usr/bin/env bash
# Syntax and shape check of the scheduler examples (docs/schedulers.md): every YAML document
# of examples/kubernetes/*.yaml parses (PyYAML) and the Nomad job file parses (python-hcl2),
# and a few structural facts hold (kinds, commands, ipc endpoints, restarts left to the
# scheduler, every nrv-* flag in that binary's --help when target/debug or $NERVE_BIN has it).
# Prints each check; exits 1 if any failed, 2 when
# the checker itself cannot be installed. Needs python3 with venv and pip.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${NERVE_EXAMPLES_VENV:-${TMPDIR:-/tmp}/nerve-examples-venv}"
if ! "$VENV/bin/python" -c 'import yaml, hcl2' 2>/dev/null; then
    if ! { python3 -m venv "$VENV" &&
        "$VENV/bin/pip" install --quiet --disable-pip-version-check pyyaml python-hcl2; }; then
        echo "check-examples: could not install pyyaml and python-hcl2 into $VENV (python3 -m venv, pip)" >&2
        exit 2
    fi
fi

exec "$VENV/bin/python" - <<'PY'
import glob, sys
import yaml, hcl2

failed = False
def check(what, ok, detail=""):
    global failed
    print(("ok    " if ok else "FAIL  ") + what + (f" ({detail})" if detail and not ok else ""))
    if not ok:
        failed = True

def unquote(s):
    # python-hcl2 keeps the quotes of string values in some versions.
    return s[1:-1] if isinstance(s, str) and len(s) >= 2 and s[0] == s[-1] == '"' else s

def blocks(body, kind):
    """The labelled blocks of one kind: [(label, body)] whatever python-hcl2's shape."""
    out = []
    for item in body.get(kind, []):
        for label, inner in item.items():
            out.append((unquote(label), inner))
    return out

import os, re, subprocess

def options(args):
    """nrv-open's and nrv-center's own arguments: those before `--` (the rest is CMD's)."""
    return args[:args.index("--")] if "--" in args else args

def endpoints(args):
    own = options(args)
    return [own[i + 1] for i, a in enumerate(own[:-1]) if a in ("-e", "-c")]

HELP = {}
def flags_exist(where, binary, args):
    """Every flag given is in the binary's --help, when a build is at hand (CI builds first)."""
    exe = os.path.join(os.environ.get("NERVE_BIN", "target/debug"), binary)
    if not os.access(exe, os.X_OK):
        print(f"skip  {where}: {binary}'s flags not checked ({exe} is not built)")
        return
    if binary not in HELP:
        out = subprocess.run([exe, "--help"], capture_output=True, text=True).stdout
        HELP[binary] = set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", out))
    used = [a for a in options(args) if a.startswith("-")]
    unknown = [a for a in used if a not in HELP[binary]]
    check(f"{where}: every flag given to {binary} is in its --help ({' '.join(used)})", not unknown, unknown)

# --- Kubernetes ---
docs = {}
for path in sorted(glob.glob("examples/kubernetes/*.yaml")):
    try:
        with open(path) as f:
            parsed = [d for d in yaml.safe_load_all(f) if d is not None]
        check(f"{path}: parses as YAML ({len(parsed)} documents)", True)
    except yaml.YAMLError as e:
        check(f"{path}: parses as YAML", False, str(e))
        continue
    for d in parsed:
        check(f"{path}: {d.get('kind')} has apiVersion, kind, metadata.name",
              all(k in d for k in ("apiVersion", "kind")) and "name" in d.get("metadata", {}))
    docs[path] = parsed

def kinds(path, kind):
    return [d for d in docs.get(path, []) if d.get("kind") == kind]

def container_checks(path, workload, binary):
    spec = workload["spec"]
    pod = spec["template"]["spec"]
    check(f"{path}: {workload['kind']} selector matches its pod labels",
          all(spec["template"]["metadata"]["labels"].get(k) == v
              for k, v in spec["selector"]["matchLabels"].items()))
    c = pod["containers"][0]
    check(f"{path}: the container's command is {binary}", c.get("command", [""])[0].endswith("/" + binary), c.get("command"))
    args = [str(a) for a in c.get("args", [])]
    eps = endpoints(args)
    check(f"{path}: endpoints are ipc ({', '.join(eps)})",
          bool(eps) and all(e.startswith("ipc:///run/nerve/") for e in eps))
    flags_exist(path, binary, args)
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    host = {v["name"]: v.get("hostPath", {}).get("path") for v in pod.get("volumes", [])}
    check(f"{path}: /run/nerve is a hostPath volume mounted at /run/nerve",
          any(mounts.get(n) == "/run/nerve" and p == "/run/nerve" for n, p in host.items()))
    refs = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in c.get("env", [])}
    used = [a for a in args if "$(" in a]
    missing = [v for a in used for v in [p.split(")")[0] for p in a.split("$(")[1:]] if v not in refs]
    check(f"{path}: every $(VAR) in args is a Downward API env var ({sorted(refs)})", not missing, missing)
    return pod, args

ds_path = "examples/kubernetes/nerve-center-daemonset.yaml"
ds = kinds(ds_path, "DaemonSet")
check(f"{ds_path}: holds one DaemonSet", len(ds) == 1)
if ds:
    container_checks(ds_path, ds[0], "nrv-center")

app_path = "examples/kubernetes/app-with-nrv-open.yaml"
apps = kinds(app_path, "Deployment")
check(f"{app_path}: holds one Deployment", len(apps) == 1)
if apps:
    pod, args = container_checks(app_path, apps[0], "nrv-open")
    check(f"{app_path}: nrv-open leaves restarts to the kubelet (--autorestart never)",
          "--autorestart" in args and args[args.index("--autorestart") + 1] == "never")
    check(f"{app_path}: the child's command follows --", "--" in args and len(args) > args.index("--") + 1)
    grace = pod.get("terminationGracePeriodSeconds", 30)
    wait = float(args[args.index("--stopwaitsecs") + 1]) if "--stopwaitsecs" in args else 10
    linger = float(args[args.index("--linger") + 1]) if "--linger" in args else 5
    check(f"{app_path}: terminationGracePeriodSeconds {grace} > stopwaitsecs {wait:g} + linger {linger:g}", grace > wait + linger)

# --- Nomad ---
path = "examples/nomad/nerve.nomad.hcl"
try:
    with open(path) as f:
        nomad = hcl2.load(f)
    check(f"{path}: parses as HCL", True)
except Exception as e:
    check(f"{path}: parses as HCL", False, str(e))
    nomad = {}
jobs = dict(blocks(nomad, "job"))
check(f"{path}: jobs nerve-center and worker ({', '.join(jobs)})", set(jobs) == {"nerve-center", "worker"})

def tasks(job):
    return [(g, t, body) for g, gb in blocks(job, "group") for t, body in blocks(gb, "task")]

def task_args(body):
    config = body.get("config", [{}])
    config = config[0] if isinstance(config, list) else config
    return unquote(config.get("command")), [unquote(a) for a in config.get("args", [])]

if "nerve-center" in jobs:
    job = jobs["nerve-center"]
    check(f"{path}: nerve-center is a system job", unquote(job.get("type")) == "system", job.get("type"))
    centers = [(t, *task_args(b)) for g, t, b in tasks(job) if task_args(b)[0] and task_args(b)[0].endswith("/nrv-center")]
    check(f"{path}: nerve-center has a task whose command is nrv-center", len(centers) == 1)
    for t, cmd, args in centers:
        eps = endpoints(args)
        flags_exist(path, "nrv-center", args)
        check(f"{path}: the center's endpoints are ipc ({', '.join(eps)})", bool(eps) and all(e.startswith("ipc:///run/nerve/") for e in eps))
if "worker" in jobs:
    job = jobs["worker"]
    opens = [(b, *task_args(b)) for g, t, b in tasks(job) if task_args(b)[0] and task_args(b)[0].endswith("/nrv-open")]
    check(f"{path}: worker has a task whose command is nrv-open", len(opens) == 1)
    for b, cmd, args in opens:
        flags_exist(path, "nrv-open", args)
        check(f"{path}: nrv-open leaves restarts to Nomad (--autorestart never)",
              "--autorestart" in args and args[args.index("--autorestart") + 1] == "never")
        name = args[args.index("--name") + 1] if "--name" in args else ""
        check(f"{path}: the process name comes from Nomad's variables ({name})",
              all(v in name for v in ("NOMAD_JOB_NAME", "NOMAD_TASK_NAME", "ALLOC_ID")))
        check(f"{path}: nrv-open reports over the center's ipc socket", "-e" in args and args[args.index("-e") + 1] == "ipc:///run/nerve/nerve.sock")
        check(f"{path}: the task's driver is raw_exec or exec", unquote(b.get("driver")) in ("raw_exec", "exec"))

if failed:
    print("check-examples: FAILED")
    sys.exit(1)
print("check-examples: all checks passed")
PY
