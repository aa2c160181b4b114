"""pkgsign benchmark: the GnuPG floor, the `sign` client end to end, client start-up, keyring
scale and POST /gen_key latency, measured in one run on one machine (see docs/performance.md).

    make bench                          # full run (about 10 minutes), or:
    .venv/bin/python bench/run.py [--quick] [--sections floor,e2e,startup,scale,genkey]
    .venv/bin/python bench/run.py --sign-conf /etc/sign.conf --key rsa4096=NAME --key ed25519=NAME \
        --stack-label "httpd+mod_wsgi (lab signer)"    # e2e and start-up against any server

Every measurement is repeated; the table shows the median, the spread (min..max) and, where the
issue sets a target, the ratio to it (>= 1.00 means met, for rates and for latencies alike).
Raw values go to results/bench/bench.json.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
# The instance helper and HTTP client the test suites use (pkgsign_testlib): the bench is run as
# a script, not by scripts/pytest-suite.sh, so nothing else puts tests/pytest_plugins on the path.
sys.path.insert(0, os.path.join(REPO, "tests", "pytest_plugins"))
import pkgsign_testlib  # noqa: E402  pylint: disable=wrong-import-position
from pkgsign_testlib import Api  # noqa: E402  pylint: disable=wrong-import-position

CACHE = os.path.join(HERE, ".cache")
RESULTS = os.path.join(REPO, "results", "bench")
BIN = os.path.dirname(os.path.abspath(sys.executable))  # .venv/bin: sign, pkgsign-admin
LAUNCHER = []  # the `sign` launcher the roles install (python -I -S), written into the work directory


def sign_path():
    """The `sign` command measured: the launcher as deployed, or the console script before main() made it."""
    return LAUNCHER[0] if LAUNCHER else os.path.join(BIN, "sign")


ALGORITHMS = ("rsa4096", "ed25519")
STACK_SERVE = "pkgsign-admin serve"

# obs-signd on a 2-core machine (issue 7): serial detached signatures per second.
OBS_SIGND_RATE = {"rsa4096": 10.0, "ed25519": 35.0}
AGENT_SHARE = 0.8          # (b) and (c) against the raw agent rate
STARTUP_MS = 50.0
SCALE_FACTOR = 1.5         # 10,000-key latency against 10-key latency
GENKEY_POOL_P50_MS = 100.0
GENKEY_EMPTY_P99_MS = 2000.0

# Sizes per mode: (quick, full).
SIZES = {
    "agent": {"rsa4096": (60, 200), "ed25519": (300, 1500)},
    "gpg_process": {"rsa4096": (8, 20), "ed25519": (20, 60)},
    "serial": {"rsa4096": (12, 40), "ed25519": (30, 100)},
    "concurrent": {"rsa4096": (16, 60), "ed25519": (48, 200)},
    "batch": {"rsa4096": (40, 150), "ed25519": (150, 600)},
    "rpm_serial": {"rsa4096": (8, 20), "ed25519": (16, 40)},
    "rpm_concurrent": {"rsa4096": (16, 40), "ed25519": (24, 80)},
    "rpm_batch": {"rsa4096": (24, 80), "ed25519": (48, 200)},
    "genkey": {"rsa4096": (8, 30), "ed25519": (10, 30)},     # RSA generation time is random: many samples
    "genkey_pool": {"rsa4096": (8, 30), "ed25519": (8, 20)},
    "genkey_drained": {"rsa4096": (10, 30)},
}
SCALE_LEVELS = (10, 1000, 10000)
SECTIONS = ("floor", "e2e", "startup", "scale", "genkey", "httpd", "batchsize")
# batchsize: states per POST /sign measured, and the request timeout one request must stay well under
BATCH_STATES = {"rsa4096": ((1, 50, 250, 1000), (1, 50, 100, 250, 500, 1000)), "ed25519": ((1, 250, 1000), (1, 250, 1000))}
REQUEST_TIMEOUT = 60.0      # [server] serve_request_timeout's default (pkgsign-admin serve)
REQUEST_SHARE = 0.25        # one request of max_digests_per_request states within a quarter of it
SCALE_CHUNK = 500           # keys per generation home (keybox rewrites grow with its size)


class BenchError(Exception):
    pass


def say(message):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), message), file=sys.stderr, flush=True)


def gpg_env(home=None):
    env = dict(os.environ, LC_ALL="C", LANG="C")
    if home:
        env["GNUPGHOME"] = home
    return env


def run(argv, env=None, check=True, input=None):
    proc = subprocess.run(argv, env=env, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if check and proc.returncode != 0:
        raise BenchError("%s failed (%d): %s" % (" ".join(argv[:4]), proc.returncode,
                                                 proc.stderr.decode("utf-8", "replace").strip()[-800:]))
    return proc


def timed(argv, env=None):
    started = time.perf_counter()
    run(argv, env=env)
    return time.perf_counter() - started


def percentile(values, pct):
    """Nearest-rank percentile (with few samples p99 is the maximum)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


# -- results ---------------------------------------------------------------------------

class Results:
    def __init__(self):
        self.rows = []

    def add(self, section, name, values, unit, stack="-", algo="-", target=None, higher_is_better=True,
            target_text="", note="", n=None):
        values = [float(v) for v in values]
        median = statistics.median(values)
        ratio = None
        if target:
            ratio = (median / target) if higher_is_better else (target / median if median else float("inf"))
        row = {"section": section, "name": name, "stack": stack, "algo": algo, "unit": unit, "values": values,
               "median": median, "min": min(values), "max": max(values), "n": n or len(values),
               "target": target, "target_text": target_text, "ratio": ratio, "note": note}
        self.rows.append(row)
        say("%-40s %-8s %10s %s  (%s)" % (name, algo, _fmt(median), unit, _spread(row)))
        return row

    def find(self, section, name, algo):
        for row in self.rows:
            if row["section"] == section and row["name"] == name and row["algo"] == algo:
                return row
        return None

    def table(self):
        header = ("section", "measurement", "algo", "stack", "median", "unit", "spread (min..max)", "n",
                  "target", "ratio")
        lines = [header]
        for row in self.rows:
            ratio = ""
            if row["ratio"] is not None:
                ratio = "%.2f %s" % (row["ratio"], "ok" if row["ratio"] >= 1.0 else "MISSED")
            lines.append((row["section"], row["name"], row["algo"], row["stack"], _fmt(row["median"]), row["unit"],
                          _spread(row), str(row["n"]), row["target_text"], ratio))
        widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
        out = []
        for index, line in enumerate(lines):
            out.append("| " + " | ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(line)) + " |")
            if index == 0:
                out.append("| " + " | ".join("-" * widths[i] for i in range(len(header))) + " |")
        return "\n".join(out)


def _fmt(value):
    if value >= 100:
        return "%.0f" % value
    if value >= 10:
        return "%.1f" % value
    return "%.2f" % value


def _spread(row):
    return "%s..%s" % (_fmt(row["min"]), _fmt(row["max"]))


# -- a served instance -----------------------------------------------------------------

class Instance(pkgsign_testlib.Instance):
    """`pkgsign-admin init` + `serve` in a temporary directory, with an unlimited client token;
    the installed `pkgsign-admin` (the venv's) serves it."""

    server_output = subprocess.DEVNULL  # nobody reads the server's output during a long run

    def __init__(self, root, keygen_extra=""):
        super().__init__(root)
        run([os.path.join(BIN, "pkgsign-admin"), "init", root, "--algorithm", "ed25519"])
        with open(self.config, encoding="utf-8") as handle:
            text = handle.read()
        # No rate limit (the benchmark sends thousands of requests), little logging.
        text = text.replace("default = 600/60", "default = 0").replace("log_level = INFO", "log_level = WARNING")
        text = text.replace("[keygen]\n", "[keygen]\n" + keygen_extra)
        # the batchsize section measures requests beyond the default limit it sizes
        text = text.replace("[signing]\n", "[signing]\nmax_digests_per_request = %d\n" % max(
            max(sizes) for sizes in BATCH_STATES["rsa4096"] + BATCH_STATES["ed25519"]))
        with open(self.config, "w", encoding="utf-8") as handle:
            handle.write(text)
        self.token = self.secret("client")
        self.tokens["client"] = self.token
        self.api = None
        self.label = STACK_SERVE

    def serve_command(self, bind):
        return [os.path.join(BIN, "pkgsign-admin"), "serve", "--config", self.config, "--bind", bind], gpg_env()

    def start(self):
        super().start()
        self.api = Api(self.url, self.token)
        return self

    def stop(self):
        super().stop()
        self.process = None
        for home in (self.gnupg_home, os.path.join(self.root, "pool", "gnupg")):
            if os.path.isdir(home):
                run(["gpgconf", "--kill", "gpg-agent"], env=gpg_env(home), check=False)

    def metadata(self, email):
        with open(os.path.join(self.root, "keys", quote(email.lower(), safe="@#+-_.") + ".json"), encoding="utf-8") as handle:
            return json.load(handle)


HTTPD_BINARY = "/usr/sbin/apache2"
HTTPD_MODULES = "/usr/lib/apache2/modules"
HTTPD_USER = "www-data"
HTTPD_CONF = """\
# httpd + mod_wsgi as roles/signer deploys it (httpd-pkgsign.conf.j2: one daemon group,
# signer_wsgi_processes x signer_wsgi_threads), in the foreground for the benchmark.
ServerRoot {base}
PidFile {base}/httpd.pid
ErrorLog {base}/error.log
LogLevel warn
ServerName localhost
User {user}
Group {user}
LoadModule mpm_event_module {modules}/mod_mpm_event.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule wsgi_module {modules}/mod_wsgi.so
Listen 127.0.0.1:{port}
WSGISocketPrefix {base}/wsgi
<VirtualHost 127.0.0.1:{port}>
    WSGIDaemonProcess pkgsign user={user} group={user} processes=2 threads=8 python-home={venv} home={root} umask=0077 display-name=%{{GROUP}}
    WSGIProcessGroup pkgsign
    WSGIApplicationGroup %{{GLOBAL}}
    WSGIPassAuthorization On
    WSGIScriptAlias / {root}/pkgsign.wsgi
    <Directory {root}>
        <Files pkgsign.wsgi>
            Require all granted
        </Files>
    </Directory>
</VirtualHost>
"""


def httpd_available():
    return os.path.exists(HTTPD_BINARY) and os.path.exists(os.path.join(HTTPD_MODULES, "mod_wsgi.so")) \
        and os.geteuid() == 0 and run(["id", HTTPD_USER], check=False).returncode == 0


class HttpdInstance(Instance):
    """The same instance served by httpd + mod_wsgi (2 daemon processes x 8 threads, the role's
    defaults), running as www-data like the role's service user."""

    def __init__(self, base):
        # httpd's children (www-data) must traverse to the WSGI socket and script.
        os.makedirs(base, mode=0o755)
        os.chmod(base, 0o755)
        self.base = base
        super().__init__(os.path.join(base, "instance"))
        self.label = "httpd+mod_wsgi"

    def start(self):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        wsgi = os.path.join(self.root, "pkgsign.wsgi")
        with open(wsgi, "w", encoding="utf-8") as handle:
            handle.write("import os\nos.environ['PKGSIGN_CONFIG'] = %r\nfrom pkgsign.wsgi import application\n"
                         % self.config)
        run(["chown", "-R", "%s:%s" % (HTTPD_USER, HTTPD_USER), self.root])
        conf = os.path.join(self.base, "httpd.conf")
        with open(conf, "w", encoding="utf-8") as handle:
            handle.write(HTTPD_CONF.format(base=self.base, user=HTTPD_USER, modules=HTTPD_MODULES, port=port,
                                           venv=os.path.dirname(BIN), root=self.root))
        self.process = subprocess.Popen([HTTPD_BINARY, "-f", conf, "-DFOREGROUND"], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True, env=gpg_env())
        self.url = "http://127.0.0.1:%d" % port
        deadline = time.time() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if self.process.poll() is not None or time.time() > deadline:
                    raise BenchError("httpd did not start; see %s/error.log" % self.base)
                time.sleep(0.1)
        self.write_sign_conf()
        self.api = Api(self.url, self.token)
        status, _body = self.api.call("GET", "/health/ready")
        if status != 200:
            raise BenchError("httpd+mod_wsgi instance not ready (%d); see %s/error.log" % (status, self.base))
        return self

    def stop(self):
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            self.process = None
        run(["gpgconf", "--kill", "gpg-agent"], env=gpg_env(self.gnupg_home), check=False)


def gen_key(api, email, algorithm):
    started = time.perf_counter()
    status, payload = api.call("POST", "/gen_key", {"name_real": "bench " + algorithm, "name_email": email,
                                                    "algorithm": algorithm})
    elapsed = time.perf_counter() - started
    if status not in (200, 201):
        raise BenchError("POST /gen_key %s: %d %s" % (email, status, payload[:300]))
    return elapsed, json.loads(payload)


# -- fixtures: files, RPMs, verification -------------------------------------------------

def make_files(directory, count, size=64 * 1024):
    os.makedirs(directory, exist_ok=True)
    paths = []
    for index in range(count):
        path = os.path.join(directory, "f%04d.bin" % index)
        with open(path, "wb") as handle:
            handle.write(os.urandom(size))
        paths.append(path)
    return paths


def build_rpm():
    """A small noarch RPM, built once with rpmbuild and cached."""
    target = os.path.join(CACHE, "bench-1.0-1.noarch.rpm")
    if os.path.exists(target):
        return target
    if not shutil.which("rpmbuild"):
        return None
    os.makedirs(CACHE, exist_ok=True)
    top = tempfile.mkdtemp(prefix="bench-rpmbuild-")
    try:
        spec = os.path.join(top, "bench.spec")
        with open(spec, "w", encoding="utf-8") as handle:
            handle.write("Name: bench\nVersion: 1.0\nRelease: 1\nSummary: pkgsign benchmark package\nLicense: MIT\n"
                         "BuildArch: noarch\n%description\nbenchmark\n%install\n"
                         "mkdir -p %{buildroot}/usr/share/bench\n"
                         "head -c 262144 /dev/urandom > %{buildroot}/usr/share/bench/data\n"
                         "%files\n/usr/share/bench/data\n")
        run(["rpmbuild", "-bb", "--define", "_topdir %s" % top, "--define", "_rpmdir %s" % top,
             "--define", "_build_name_fmt %%{NAME}.rpm", spec])
        shutil.copy(os.path.join(top, "bench.rpm"), target)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    return target


def copy_rpms(source, directory, count):
    if os.path.isdir(directory):
        shutil.rmtree(directory)
    os.makedirs(directory)
    paths = []
    for index in range(count):
        path = os.path.join(directory, "p%04d.rpm" % index)
        shutil.copyfile(source, path)
        paths.append(path)
    return paths


class Verifier:
    """Stock gpg and rpmkeys check that what was timed is a valid signature."""

    def __init__(self, workdir, sign_env, keys):
        self.home = os.path.join(workdir, "verify-gnupg")
        self.rpmdb = os.path.join(workdir, "verify-rpmdb")
        os.makedirs(self.home, mode=0o700)
        os.makedirs(self.rpmdb)
        for key in keys:
            armored = run([sign_path(), "-u", key, "-p"], env=sign_env).stdout
            path = os.path.join(workdir, "pub-%s.asc" % key.replace("#", "_"))
            with open(path, "wb") as handle:
                handle.write(armored)
            run(["gpg", "--batch", "--quiet", "--import", path], env=gpg_env(self.home))
            if shutil.which("rpmkeys"):
                run(["rpmkeys", "--dbpath", self.rpmdb, "--import", path])

    def detached(self, data_path, signature_path):
        run(["gpg", "--batch", "--verify", signature_path, data_path], env=gpg_env(self.home))

    def rpm(self, path):
        out = run(["rpmkeys", "--dbpath", self.rpmdb, "--checksig", "-v", path]).stdout.decode()
        if "Signature" not in out or "NOKEY" in out or "BAD" in out:
            raise BenchError("rpmkeys does not accept %s:\n%s" % (path, out))


def run_signs(commands, env, workers):
    """Run `sign` commands with ``workers`` at a time; the wall time of all."""
    started = time.perf_counter()
    if workers == 1:
        for argv in commands:
            run(argv, env=env)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda argv: run(argv, env=env), commands))
    return time.perf_counter() - started


# -- sections --------------------------------------------------------------------------

def agent_rate(instance, algo, count):
    """Signatures per second of the instance's gpg-agent over one Assuan connection (the service's
    own agent client: RESET, SIGKEY, SETHASH, PKSIGN per digest)."""
    from pkgsign.agent import AgentConnection

    keygrip = instance.metadata(instance.keys[algo])["signing_keygrip"]
    socket_path = run(["gpgconf", "--list-dirs", "agent-socket"], env=gpg_env(instance.gnupg_home)).stdout.decode().strip()
    digests = [os.urandom(32).hex() for _digest in range(count)]
    conn = AgentConnection(socket_path)
    try:
        conn.pksign(keygrip, "sha256", digests[0])  # warm: the agent loads the key
        started = time.perf_counter()
        for digest in digests:
            conn.pksign(keygrip, "sha256", digest)
        return count / (time.perf_counter() - started)
    finally:
        conn.close()


def private_agents_rate(instance, algo, count, agents):
    """Signatures per second of ``agents`` private gpg-agents of the instance's homedir signing at
    once, pipelined (what the service's pool does under concurrent requests): the machine's
    ceiling, above the one-connection floor when there is more than one core."""
    from pkgsign import _gnupg
    from pkgsign.agent import AgentConnection

    keygrip = instance.metadata(instance.keys[algo])["signing_keygrip"]
    digests = [os.urandom(32).hex() for _digest in range(count)]
    conns = [AgentConnection.private(_gnupg.GnuPG(instance.gnupg_home, create=False)) for _agent in range(agents)]
    try:
        for conn in conns:
            conn.pksign_many(keygrip, "sha256", digests[:1])  # warm: each agent loads the key
        shares = [digests[number::agents] for number in range(agents)]
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=agents) as pool:
            list(pool.map(lambda pair: pair[0].pksign_many(keygrip, "sha256", pair[1]), zip(conns, shares)))
        return count / (time.perf_counter() - started)
    finally:
        for conn in conns:
            conn.close()


def section_floor(results, ctx):
    """Raw gpg-agent over one Assuan connection, and one `gpg --detach-sign` process per file."""
    inst = ctx.instance
    for algo in ALGORITHMS:
        count = ctx.size("agent", algo)
        rates = [agent_rate(inst, algo, count) for _repeat in range(ctx.repeats)]
        ctx.agent_rate[algo] = statistics.median(rates)
        results.add("floor", "gpg-agent PKSIGN, one connection", rates, "sig/s", "gpg-agent", algo, n=count)
        cores = os.cpu_count() or 1
        rates = [private_agents_rate(inst, algo, count, cores) for _repeat in range(ctx.repeats)]
        results.add("floor", "%d private gpg-agents at once, pipelined" % cores, rates, "sig/s", "gpg-agent", algo,
                    n=count)

        fingerprint = inst.metadata(inst.keys[algo])["fingerprint"]
        files = make_files(os.path.join(ctx.work, "floor-" + algo), ctx.size("gpg_process", algo))
        rates = []
        for _repeat in range(ctx.repeats):
            started = time.perf_counter()
            for path in files:
                run(["gpg", "--batch", "--yes", "--no-tty", "--local-user", fingerprint, "--detach-sign",
                     "--output", path + ".gpg.sig", path], env=gpg_env(inst.gnupg_home))
            rates.append(len(files) / (time.perf_counter() - started))
        results.add("floor", "gpg --detach-sign, one process per file", rates, "sig/s", "gpg", algo, n=len(files))


def section_e2e(results, ctx):
    """`sign` end to end: (a) one process per file serially, (b) 8 processes, (c) one call.

    (b) and (c) are compared with the raw agent rate measured right before each repetition on
    the same agent (the machine's load drifts; a floor taken minutes earlier would not compare).
    """
    sign = sign_path()
    env = dict(os.environ, SIGN_CONF=ctx.sign_conf)
    env.pop("SIGN_TOKEN_FILE", None)
    rpm_source = build_rpm() if shutil.which("rpmsign") else None
    floor = ctx.stack_instance  # None against a foreign sign.conf: no paired floor
    for algo in ALGORITHMS:
        key = ctx.keys[algo]
        obs = OBS_SIGND_RATE[algo]
        obs_text = "≥ %.0f/s (obs-signd)" % obs
        files = make_files(os.path.join(ctx.work, "e2e-%s-%s" % (ctx.stack_tag, algo)),
                           max(ctx.size("serial", algo), ctx.size("concurrent", algo), ctx.size("batch", algo)))
        kinds = [("sign -D", "serial", "concurrent", "batch")]
        if rpm_source is not None:
            kinds.append(("sign -r", "rpm_serial", "rpm_concurrent", "rpm_batch"))
        else:
            say("rpmsign/rpmbuild missing: RPM measurements skipped")
        for command, serial_key, concurrent_key, batch_key in kinds:
            for mode, workers, size_key in (("(a) one process per file, serial", 1, serial_key),
                                            ("(b) 8 processes concurrently", 8, concurrent_key),
                                            ("(c) one call, many files", 0, batch_key),
                                            ("(d) 8 calls at once, many files each", -8, batch_key)):
                count = ctx.size(size_key, algo)
                rates, shares = [], []
                for _repeat in range(ctx.repeats):
                    if command == "sign -r":
                        targets = copy_rpms(rpm_source, os.path.join(ctx.work, "rpm-%s-%s" % (ctx.stack_tag, algo)), count)
                        flag, out = "-r", None
                    else:
                        targets, flag, out = files[:count], "-D", ".sig"
                    if workers == 0:
                        commands, parallel = [[sign, "-u", key, flag] + targets], 1
                    elif workers < 0:  # concurrent clients, each with its share of the files
                        commands, parallel = [[sign, "-u", key, flag] + targets[i::-workers] for i in range(-workers)], -workers
                    else:
                        commands, parallel = [[sign, "-u", key, flag, path] for path in targets], workers
                    agent = agent_rate(floor, algo, ctx.size("agent", algo) // 2) if floor and workers != 1 else None
                    rate = count / run_signs(commands, env, parallel)
                    rates.append(rate)
                    if agent:
                        shares.append(rate / agent)
                if out:
                    ctx.verifier.detached(targets[0], targets[0] + out)
                    ctx.verifier.detached(targets[-1], targets[-1] + out)
                else:
                    ctx.verifier.rpm(targets[0])
                    ctx.verifier.rpm(targets[-1])
                label = "%s %s" % (command, mode)
                per_process = workers > 0  # (a) and (b): one process per file, compared with obs-signd
                results.add("e2e", label, rates, "sig/s", ctx.stack, algo,
                            target=obs if per_process else None, target_text=obs_text if per_process else "",
                            n=count)
                if shares:
                    results.add("e2e", "%s %s ÷ raw agent (paired)" % (command, mode[:3]), shares, "×", ctx.stack,
                                algo, target=AGENT_SHARE, target_text="≥ 0.80× agent", n=count)


def section_startup(results, ctx):
    """`sign -t`, bare Python for comparison, and the time a one-file call takes to send its first request."""
    sign = sign_path()
    env = dict(os.environ, SIGN_CONF=ctx.sign_conf)
    runs = 10 if ctx.quick else 30
    timed([sign, "-t"], env)  # warm the page cache
    values = [timed([sign, "-t"], env) * 1000 for _run in range(runs)]
    results.add("startup", "sign -t (ping, whole process)", values, "ms", ctx.stack, target=STARTUP_MS,
                higher_is_better=False, target_text="≤ 50 ms")
    values = [timed([sys.executable, "-c", "pass"]) * 1000 for _run in range(runs)]
    results.add("startup", "python3 -c pass (interpreter alone)", values, "ms", "-")

    # Time from spawning `sign -D file` until its first request reaches a listening socket.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    conf = os.path.join(ctx.work, "startup-sign.conf")
    with open(conf, "w", encoding="utf-8") as handle:
        handle.write("server: http://127.0.0.1:%d\ntoken_file: %s\n" % (port, ctx.token_file))
    data = make_files(os.path.join(ctx.work, "startup"), 1)[0]
    values = []
    for _run in range(runs):
        started = time.perf_counter()
        proc = subprocess.Popen([sign, "-u", ctx.keys["ed25519"], "-D", data], env=dict(os.environ, SIGN_CONF=conf),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        conn, _client_address = listener.accept()
        conn.recv(65536)
        values.append((time.perf_counter() - started) * 1000)
        conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        conn.close()
        proc.wait()
    listener.close()
    row = results.add("startup", "sign -D: spawn to first request", values, "ms", ctx.stack)
    serial = results.find("e2e", "sign -D (a) one process per file, serial", "ed25519")
    if serial:
        one_call_ms = 1000.0 / serial["median"]
        row["note"] = "%.0f%% of a one-file ed25519 call (%.1f ms)" % (100 * row["median"] / one_call_ms, one_call_ms)
        say("  start-up share of a one-file call: " + row["note"])


def ensure_scale_keyring(level):
    """A cached GnuPG home with ``level`` ed25519 per-project keys and their service metadata."""
    target = os.path.join(CACHE, "keyring-%d" % level)
    if os.path.exists(os.path.join(target, "complete")):
        return target
    chunks = ensure_key_chunks(-(-level // SCALE_CHUNK) if level > SCALE_CHUNK else 1, level)
    say("assembling the %d-key keyring" % level)
    if os.path.exists(target):
        shutil.rmtree(target)
    home = os.path.join(target, "gnupg")
    os.makedirs(os.path.join(home, "private-keys-v1.d"), mode=0o700)
    for directory in (target, home):
        os.chmod(directory, 0o700)
    with open(os.path.join(home, "gpg.conf"), "w", encoding="utf-8") as handle:
        handle.write("no-auto-check-trustdb\n")
    remaining = level
    keybox_parts = []
    for chunk in chunks:
        take = min(remaining, chunk["count"])
        if take != chunk["count"]:
            raise BenchError("keyring of %d keys: not a multiple of the chunk size %d" % (level, chunk["count"]))
        remaining -= take
        with open(os.path.join(chunk["home"], "pubring.kbx"), "rb") as handle:
            keybox_parts.append(handle.read())
        for keygrip in chunk["keygrips"]:
            shutil.copy2(os.path.join(chunk["home"], "private-keys-v1.d", keygrip + ".key"),
                         os.path.join(home, "private-keys-v1.d", keygrip + ".key"))
        if remaining == 0:
            break
    # `gpg --import` rewrites the whole keybox for every key (10,000 keys: minutes). A keybox is
    # a header blob followed by self-contained key blobs, so the chunks' key blobs concatenate.
    with open(os.path.join(home, "pubring.kbx"), "wb") as handle:
        for index, data in enumerate(keybox_parts):
            handle.write(data if index == 0 else _keybox_without_header(data))
    write_metadata(home, os.path.join(target, "keys"), level)
    with open(os.path.join(target, "complete"), "w", encoding="utf-8") as handle:
        handle.write("%d\n" % level)
    run(["gpgconf", "--kill", "gpg-agent"], env=gpg_env(home), check=False)
    return target


def _keybox_without_header(data):
    """The blobs of a keybox file after its first (header, type 1) blob."""
    length, kind = int.from_bytes(data[:4], "big"), data[4]
    if kind != 1 or data[8:12] != b"KBXf":
        raise BenchError("not a keybox file (no KBXf header blob)")
    return data[length:]


def write_metadata(home, metadata_dir, expected):
    """Service metadata for every key, as /gen_key would have written it (one listing)."""
    from pkgsign import _gnupg
    from pkgsign.keystore import _file_name, key_record

    os.makedirs(metadata_dir, mode=0o700, exist_ok=True)
    keys = _gnupg.GnuPG(home, create=False).list_keys(secret=True)
    if len(keys) != expected:
        raise BenchError("the assembled keyring lists %d keys with secret parts, not %d" % (len(keys), expected))
    for key in keys:
        record = key_record(key, key.emails[0], origin="generated")
        with open(os.path.join(metadata_dir, _file_name(record["name_email"])), "w", encoding="utf-8") as handle:
            json.dump(record, handle, sort_keys=True, indent=1)


def ensure_key_chunks(count, level):
    """Generation homes of SCALE_CHUNK keys each (two gpg batch runs at a time), cached."""
    base = os.path.join(CACHE, "key-chunks")
    os.makedirs(base, mode=0o700, exist_ok=True)
    size = SCALE_CHUNK if level > SCALE_CHUNK else level

    def make(index):
        home = os.path.join(base, "chunk-%02d-%d" % (index, size))
        info_path = os.path.join(home, "chunk.json")
        if os.path.exists(info_path):
            with open(info_path, encoding="utf-8") as handle:
                return json.load(handle)
        if os.path.exists(home):
            shutil.rmtree(home)
        os.makedirs(home, mode=0o700)
        with open(os.path.join(home, "gpg.conf"), "w", encoding="utf-8") as handle:
            handle.write("no-auto-check-trustdb\n")
        emails = ["bench#p%05d@scale.bench" % (index * SCALE_CHUNK + n) for n in range(size)]
        batch = []
        for email in emails:
            batch += ["Key-Type: eddsa", "Key-Curve: ed25519", "Key-Usage: sign,cert",
                      "Name-Real: scale benchmark", "Name-Email: " + email, "Expire-Date: 0",
                      "%no-protection", "%commit"]
        started = time.perf_counter()
        run(["gpg", "--batch", "--quiet", "--gen-key"], env=gpg_env(home), input=("\n".join(batch) + "\n").encode())
        listing = run(["gpg", "--batch", "--with-colons", "--with-keygrip", "--list-secret-keys"],
                      env=gpg_env(home)).stdout.decode()
        grips, seen_sec = [], False
        for line in listing.splitlines():
            fields = line.split(":")
            if fields[0] == "sec":
                seen_sec = True
            elif fields[0] == "grp" and seen_sec:
                grips.append(fields[9])
                seen_sec = False
        run(["gpgconf", "--kill", "gpg-agent"], env=gpg_env(home), check=False)
        info = {"home": home, "count": size, "emails": emails, "keygrips": grips}
        if len(grips) != size:
            raise BenchError("chunk %d: expected %d keys, gpg made %d" % (index, size, len(grips)))
        with open(info_path, "w", encoding="utf-8") as handle:
            json.dump(info, handle)
        say("  key chunk %d: %d ed25519 keys in %.1f s" % (index, size, time.perf_counter() - started))
        return info

    say("generating %d ed25519 keys in %d chunk(s) (cached in bench/.cache)" % (count * size, count))
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(make, range(count)))


def section_scale(results, ctx):
    """`sign -p` and one signature with 10, 1,000 and 10,000 per-project keys in the keyring.

    One server per keyring size runs at the same time and the sizes take turns, so a change in
    the machine's load hits every size alike.
    """
    sign = sign_path()
    levels = [level for level in SCALE_LEVELS if level <= ctx.max_keys]
    runs = 8 if ctx.quick else 15
    instances = {}
    try:
        for level in levels:
            cached = ensure_scale_keyring(level)
            root = os.path.join(ctx.work, "scale-%d" % level)
            inst = Instance(root)
            shutil.rmtree(inst.gnupg_home)
            shutil.copytree(os.path.join(cached, "gnupg"), inst.gnupg_home, symlinks=True)
            shutil.copytree(os.path.join(cached, "keys"), os.path.join(root, "keys"), dirs_exist_ok=True)
            instances[level] = inst.start()
        samples = {}
        commands = {}
        for level, inst in instances.items():
            env = dict(os.environ, SIGN_CONF=inst.sign_conf)
            key = "bench#p%05d@scale.bench" % (level - 1)  # the newest key: last in the keybox
            data = make_files(os.path.join(inst.root, "data"), 1)[0]
            run([sign, "-u", key, "-D", data], env=env)  # warm: the agent loads the key
            commands[level] = (env, (("sign -p", [sign, "-u", key, "-p"]), ("sign -D one file", [sign, "-u", key, "-D", data])))
        for _run in range(runs):
            for level, (env, measured) in commands.items():
                for what, argv in measured:
                    samples.setdefault((what, level), []).append(timed(argv, env) * 1000)
        for what in ("sign -p", "sign -D one file"):
            base = statistics.median(samples[(what, levels[0])])
            for level in levels:
                target = text = None
                if level == SCALE_LEVELS[-1] and levels[0] == SCALE_LEVELS[0]:
                    target, text = SCALE_FACTOR * base, "≤ 1.5× 10-key (%.0f ms)" % (SCALE_FACTOR * base)
                results.add("scale", "%s, %d keys" % (what, level), samples[(what, level)], "ms", STACK_SERVE,
                            "ed25519", target=target, higher_is_better=False, target_text=text or "")
    finally:
        for inst in instances.values():
            inst.stop()


def pool_supported():
    return run([os.path.join(BIN, "pkgsign-admin"), "pool", "--help"], check=False).returncode == 0


def section_genkey(results, ctx):
    """POST /gen_key latency: fresh generation (an empty or no pool), and from a pool of ready keys."""
    for algo in ALGORITHMS:
        count = ctx.size("genkey", algo)
        values = [gen_key(ctx.instance.api, "lat-%s-%d@genkey.bench" % (algo, n), algo)[0] * 1000 for n in range(count)]
        results.add("genkey", "POST /gen_key p50, no pool", values, "ms", STACK_SERVE, algo, n=count)
        results.add("genkey", "POST /gen_key p90, no pool", [percentile(values, 90)], "ms", STACK_SERVE, algo, n=count)
        results.add("genkey", "POST /gen_key p99, no pool (= empty pool)", [percentile(values, 99)], "ms", STACK_SERVE,
                    algo, target=GENKEY_EMPTY_P99_MS if algo == "rsa4096" else None, higher_is_better=False,
                    target_text="≤ 2000 ms" if algo == "rsa4096" else "", n=count)
    if not pool_supported():
        say("this pkgsign has no key pool (pkgsign-admin pool): pool latency not measured")
        return
    sizes = {algo: ctx.size("genkey_pool", algo) for algo in ALGORITHMS}
    root = os.path.join(ctx.work, "genkey-pool")
    inst = Instance(root, keygen_extra="pool_size = %d\npool_algorithms = %s\n" % (max(sizes.values()), ", ".join(ALGORITHMS)))
    started = time.perf_counter()
    say("filling the key pool (%s)" % ", ".join("%d %s" % (sizes[a], a) for a in ALGORITHMS))
    run([os.path.join(BIN, "pkgsign-admin"), "pool", "fill", "--config", inst.config])
    say("  pool filled in %.1f s" % (time.perf_counter() - started))
    inst.start()
    try:
        for algo in ALGORITHMS:
            values = [gen_key(inst.api, "pool-%s-%d@genkey.bench" % (algo, n), algo)[0] * 1000
                      for n in range(sizes[algo])]
            results.add("genkey", "POST /gen_key p50, from the pool", values, "ms", STACK_SERVE, algo,
                        target=GENKEY_POOL_P50_MS if algo == "rsa4096" else None, higher_is_better=False,
                        target_text="≤ 100 ms" if algo == "rsa4096" else "")
            results.add("genkey", "POST /gen_key p99, from the pool", [percentile(values, 99)], "ms", STACK_SERVE, algo,
                        n=len(values))
        # A pool-bound key signs; stock gpg and rpmkeys accept its public key and signatures.
        email = "pool-rsa4096-0@genkey.bench"
        env = dict(os.environ, SIGN_CONF=inst.sign_conf)
        data = make_files(os.path.join(root, "data"), 1)[0]
        run([sign_path(), "-u", email, "-D", data], env=env)
        verifier = Verifier(os.path.join(root, "verify"), env, [email])
        ctx.verifiers.append(verifier)
        verifier.detached(data, data + ".sig")
        rpm_source = build_rpm() if shutil.which("rpmsign") else None
        if rpm_source:
            package = copy_rpms(rpm_source, os.path.join(root, "rpm"), 1)[0]
            run([sign_path(), "-u", email, "-r", package], env=env)
            verifier.rpm(package)
        say("  a pool-bound RSA-4096 key verifies with stock gpg%s" % (" and rpmkeys" if rpm_source else ""))
    finally:
        inst.stop()
    genkey_drained_pool(results, ctx)


def section_batchsize(results, ctx):
    """What one POST /sign with N hash states costs (the server finishes N hashes and gpg-agent makes
    N signatures on one connection), for sizing [signing] max_digests_per_request: the largest
    request must stay well under the request timeout on a loaded machine, RSA-4096 being the
    expensive case. Reports seconds per request and the N that fits REQUEST_SHARE of the timeout
    at the measured rate."""
    from pkgsign.hashstate import Hasher

    api = ctx.instance.api
    for algo in ALGORITHMS:
        email = ctx.instance.keys[algo]
        sizes = BATCH_STATES[algo][0 if ctx.quick else 1]
        per_signature = []
        for size in sizes:
            body = {"key": email, "states": [Hasher("sha256").update(os.urandom(64)).state().to_json()
                                             for _state in range(size)]}
            values = []
            for _repeat in range(ctx.repeats):
                started = time.perf_counter()
                status, payload = api.call("POST", "/sign", body)
                values.append(time.perf_counter() - started)
                if status != 200:
                    raise BenchError("POST /sign of %d states: %d %s" % (size, status, payload[:200]))
            results.add("batchsize", "POST /sign, %d states in one request" % size, values, "s", STACK_SERVE, algo,
                        higher_is_better=False, n=size)
            if size >= 50:
                per_signature.append(max(values) / size)
        slowest = max(per_signature)
        fits = int(REQUEST_TIMEOUT * REQUEST_SHARE / slowest)
        results.add("batchsize", "states that fit %d%% of a %d s request (slowest run)"
                    % (REQUEST_SHARE * 100, REQUEST_TIMEOUT), [fits], "states", STACK_SERVE, algo)


def genkey_drained_pool(results, ctx):
    """RSA-4096 with a small pool that starts empty and requests 0.5 s apart: the pool seldom has a
    key ready, so this is the empty-pool path with the service's refill and spare generations."""
    count = ctx.size("genkey_drained", "rsa4096")
    inst = Instance(os.path.join(ctx.work, "genkey-drained"), keygen_extra="pool_size = 2\npool_algorithms = rsa4096\n")
    inst.start()
    values = []
    try:
        for number in range(count):
            values.append(gen_key(inst.api, "drained-%d@genkey.bench" % number, "rsa4096")[0] * 1000)
            time.sleep(0.5)
    finally:
        inst.stop()
    label = "POST /gen_key %s, drained pool (size 2, requests 0.5 s apart)"
    results.add("genkey", label % "p50", values, "ms", STACK_SERVE, "rsa4096", n=count)
    results.add("genkey", label % "p90", [percentile(values, 90)], "ms", STACK_SERVE, "rsa4096", n=count)
    results.add("genkey", label % "p99", [percentile(values, 99)], "ms", STACK_SERVE, "rsa4096", n=count,
                target=GENKEY_EMPTY_P99_MS, higher_is_better=False, target_text="≤ 2000 ms")


# -- driver ----------------------------------------------------------------------------

class Context:
    def __init__(self, args, work):
        self.quick = args.quick
        self.repeats = args.repeats or (2 if args.quick else 3)
        self.work = work
        self.agent_rate = {}
        self.max_keys = args.max_keys or (SCALE_LEVELS[-1])
        self.instance = None        # the local `pkgsign-admin serve` instance (floor, genkey)
        self.stack_instance = None  # the instance e2e runs against (None: a foreign sign.conf)
        self.stack_tag = "serve"
        self.keys = {}
        self.sign_conf = None
        self.token_file = None
        self.stack = STACK_SERVE
        self.verifier = None
        self.cleanup = []
        self.verifiers = []

    def size(self, what, algo):
        quick, full = SIZES[what][algo]
        return quick if self.quick else full


def machine_description():
    cpu = "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpg = run(["gpg", "--version"], check=False).stdout.decode().splitlines()
    rpm = run(["rpm", "--version"], check=False).stdout.decode().strip() if shutil.which("rpm") else "no rpm"
    return {"cpu": cpu, "cores": os.cpu_count(), "load_at_start": os.getloadavg(), "kernel": platform.release(),
            "os": _os_release(), "python": platform.python_version(), "gpg": gpg[0] if gpg else "?",
            "libgcrypt": next((l for l in gpg if l.startswith("libgcrypt")), "?"), "rpm": rpm,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def _os_release():
    try:
        with open("/etc/os-release", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.platform()


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts, 2 repeats, keyring up to 1,000 keys")
    parser.add_argument("--repeats", type=int, help="repetitions of each measurement (default 3, quick 2)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help="comma-separated: %s (httpd: e2e against httpd+mod_wsgi when installed)" % ", ".join(SECTIONS))
    parser.add_argument("--max-keys", type=int, help="largest keyring of the scale section (10, 1000 or 10000)")
    parser.add_argument("--sign-conf", help="measure e2e and start-up against this sign.conf's server instead")
    parser.add_argument("--key", action="append", default=[], metavar="ALGO=NAME",
                        help="with --sign-conf: the key to use per algorithm (rsa4096=..., ed25519=...)")
    parser.add_argument("--stack-label", help="with --sign-conf: what serves it, for the table")
    parser.add_argument("--json", default=os.path.join(RESULTS, "bench.json"), help="raw results file")
    args = parser.parse_args(argv)
    if args.quick and not args.max_keys:
        args.max_keys = 1000
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit("unknown section(s): %s" % ", ".join(sorted(unknown)))
    # Installed packages carry their byte code; without it every `sign` run would compile the client.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    import pkgsign

    run([sys.executable, "-m", "compileall", "-q", os.path.dirname(os.path.abspath(pkgsign.__file__))])
    machine = machine_description()
    say("machine: %s, %s cores, load %.2f %.2f %.2f; %s; %s"
        % (machine["cpu"], machine["cores"], *machine["load_at_start"], machine["gpg"], machine["os"]))
    work = tempfile.mkdtemp(prefix="pkgsign-bench-")
    os.chmod(work, 0o755)  # httpd's www-data children traverse it to their own 0700 instance
    ctx = Context(args, work)
    os.makedirs(os.path.join(work, "bin"))
    run([sys.executable, "-m", "pkgsign.launcher", os.path.join(work, "bin", "sign")])
    LAUNCHER.append(os.path.join(work, "bin", "sign"))
    results = Results()
    started = time.perf_counter()
    try:
        if args.sign_conf:
            external(ctx, args)
        else:
            say("starting a pkgsign instance (pkgsign-admin serve) and generating one key per algorithm")
            ctx.instance = Instance(os.path.join(work, "instance"))
            ctx.cleanup.append(ctx.instance)
            use_stack(ctx, ctx.instance.start(), STACK_SERVE, "serve")
        for name in SECTIONS:
            if name not in sections:
                continue
            if args.sign_conf and name in ("floor", "scale", "genkey", "httpd"):
                say("section %s needs a local instance: skipped with --sign-conf" % name)
                continue
            if name == "httpd" and not httpd_available():
                say("section httpd: apache2 with mod_wsgi (and root) not available: skipped")
                continue
            say("== %s" % name)
            section_started = time.perf_counter()
            globals()["section_" + name](results, ctx)
            say("   %s took %.0f s" % (name, time.perf_counter() - section_started))
    finally:
        for inst in ctx.cleanup:
            inst.stop()
        for verifier in ctx.verifiers:
            run(["gpgconf", "--kill", "gpg-agent"], env=gpg_env(verifier.home), check=False)
        shutil.rmtree(work, ignore_errors=True)
    machine["load_at_end"] = os.getloadavg()
    machine["total_seconds"] = round(time.perf_counter() - started)
    print("\nmachine: %s" % json.dumps(machine))
    print("ratio: measured/target for rates, target/measured for latencies; >= 1.00 means the target is met\n")
    print(results.table())
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w", encoding="utf-8") as handle:
        json.dump({"machine": machine, "quick": args.quick, "repeats": ctx.repeats, "rows": results.rows}, handle, indent=1)
    say("total %d s; raw results in %s" % (machine["total_seconds"], args.json))
    return 0


def use_stack(ctx, inst, label, tag):
    """Make ``inst`` (started) the server e2e and start-up measure: keys, sign.conf, verifier."""
    inst.keys = {}
    for algo in ALGORITHMS:
        email = "bench-%s@keys.bench" % algo
        elapsed, _created = gen_key(inst.api, email, algo)
        inst.keys[algo] = email
        say("  %s: %s key %s in %.1f s" % (label, algo, email, elapsed))
    ctx.stack_instance, ctx.stack, ctx.stack_tag = inst, label, tag
    ctx.keys = dict(inst.keys)
    ctx.sign_conf = inst.sign_conf
    ctx.token_file = os.path.join(inst.root, "client.token")
    ctx.verifier = Verifier(os.path.join(ctx.work, "verify-" + tag), dict(os.environ, SIGN_CONF=ctx.sign_conf),
                            list(ctx.keys.values()))
    ctx.verifiers.append(ctx.verifier)


def section_httpd(results, ctx):
    """e2e and `sign -t` again, against httpd + mod_wsgi (the application stack the roles deploy)."""
    inst = HttpdInstance(os.path.join(ctx.work, "httpd"))
    ctx.cleanup.append(inst)
    inst.start()
    saved = (ctx.stack_instance, ctx.stack, ctx.stack_tag, ctx.keys, ctx.sign_conf, ctx.token_file, ctx.verifier)
    try:
        use_stack(ctx, inst, "httpd+mod_wsgi", "httpd")
        sign = sign_path()
        env = dict(os.environ, SIGN_CONF=ctx.sign_conf)
        timed([sign, "-t"], env)
        values = [timed([sign, "-t"], env) * 1000 for _run in range(10 if ctx.quick else 30)]
        results.add("startup", "sign -t (ping, whole process)", values, "ms", ctx.stack, target=STARTUP_MS,
                    higher_is_better=False, target_text="≤ 50 ms")
        section_e2e(results, ctx)
    finally:
        (ctx.stack_instance, ctx.stack, ctx.stack_tag, ctx.keys, ctx.sign_conf, ctx.token_file, ctx.verifier) = saved


def external(ctx, args):
    keys = dict(item.split("=", 1) for item in args.key if "=" in item)
    missing = [algo for algo in ALGORITHMS if algo not in keys]
    if missing:
        raise SystemExit("--sign-conf needs --key ALGO=NAME for: %s" % ", ".join(missing))
    ctx.keys = keys
    ctx.sign_conf = os.path.abspath(args.sign_conf)
    ctx.stack = args.stack_label or "server of %s" % args.sign_conf
    conf = {}
    with open(ctx.sign_conf, encoding="utf-8") as handle:
        for line in handle:
            key, sep, value = line.partition(":")
            if sep:
                conf[key.strip().lower()] = value.strip()
    ctx.token_file = os.environ.get("SIGN_TOKEN_FILE") or conf.get("token_file", "")
    ctx.verifier = Verifier(os.path.join(ctx.work, "verify"), dict(os.environ, SIGN_CONF=ctx.sign_conf),
                            list(keys.values()))
    ctx.verifiers.append(ctx.verifier)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as err:
        print("bench: %s" % err, file=sys.stderr)
        sys.exit(1)
