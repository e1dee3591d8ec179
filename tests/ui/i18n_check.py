"""What tests/ui/test_i18n.py checks in a template: English text a French reader would see that is
not inside {% trans %} or _() — text nodes and the attributes people read (title, placeholder,
aria-label, alt, data-confirm...). Code, commands and names of things are not translated: text
inside <code>, <kbd>, <pre>, <script>, <style>, and the NAMES below."""
import re
from html.parser import HTMLParser

from jinja2 import lexer

from borgfleet_ui.look import STATUS_LABELS

READ_ATTRS = {"title", "placeholder", "aria-label", "alt", "data-confirm", "data-confirm-label", "label"}
SKIP_TAGS = {"code", "kbd", "pre", "script", "style", "samp", "noscript-code"}
# Product, tool and unit names, the same in both languages.
NAMES = {"BorgFleet", "borg", "Borg", "MariaDB", "PostgreSQL", "MySQL", "MongoDB", "Redis", "Docker", "LVM", "btrfs",
         "SSH", "ssh", "sshd", "API", "URL", "UTC", "CPU", "RAM", "PID", "IP", "JSON", "cron", "lz4", "zstd", "zlib",
         "lzma", "ok", "OK", "KiB", "MiB", "GiB", "TiB", "systemd", "sudo", "uPlot", "Ansible", "AWX", "Prometheus",
         "TLS", "STARTTLS", "SMTP", "HMAC", "Apprise", "id", "psql", "mariadb", "mysql", "ext4", "xfs", "root",
         "English", "Français", "Workers", "Pools", "Archives", "Menu", "Job", "Jobs", "Dashboard"}
WORD = re.compile(r"[A-Za-zÀ-ÿ][A-Za-zÀ-ÿ'’]+")


class _Text(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.skip, self.found = 0, []

    def handle_starttag(self, tag, attrs):
        if tag in SKIP_TAGS:
            self.skip += 1
        for name, value in attrs:
            if name in READ_ATTRS and value:
                self.found.append(value)

    def handle_startendtag(self, tag, attrs):
        for name, value in attrs:
            if name in READ_ATTRS and value:
                self.found.append(value)

    def handle_endtag(self, tag):
        if tag in SKIP_TAGS and self.skip:
            self.skip -= 1

    def handle_data(self, data):
        if not self.skip:
            self.found.append(data)


def untranslated(env, source):
    """The pieces of English text of a template source outside {% trans %} blocks and _(): text and
    read attributes, and string literals of expressions that read as prose (two words, or a
    capitalised word: 'Would write', 'Never'; not 'client' or ' active', which are keys and classes)."""
    out, literals, in_trans, expect_name = [], [], False, False
    recent = []   # the last significant tokens inside {{ }} / {% %}: is a string an argument of _()?
    for _, kind, value in env.lex(source):
        if kind == lexer.TOKEN_WHITESPACE:
            continue
        if kind in (lexer.TOKEN_BLOCK_BEGIN, lexer.TOKEN_VARIABLE_BEGIN):
            expect_name = kind == lexer.TOKEN_BLOCK_BEGIN
            # A statement or expression stands here: it may sit inside a tag, so only a space.
            out.append(" ")
            recent = []
            continue
        if expect_name and kind == lexer.TOKEN_NAME:
            if value in ("trans", "pluralize"):
                in_trans = True
            elif value == "endtrans":
                in_trans = False
            expect_name = False
            continue
        expect_name = False
        if kind == lexer.TOKEN_DATA and not in_trans:
            out.append(value)
        elif kind == lexer.TOKEN_STRING and not in_trans:
            translated = len(recent) >= 2 and recent[-1] == "(" and recent[-2] in ("_", "gettext", "ngettext")
            if not translated and _prose(value):
                literals.append(value)
        recent = (recent + [value])[-4:]
    parser = _Text()
    parser.feed("".join(out))
    parser.close()
    problems = []
    for text in parser.found + literals:
        bare = text.strip().strip("'\"")
        # A path or host, or a status word: data the page shows through status_label (look.py).
        if NOT_PROSE.fullmatch(bare) or (text in literals and bare in STATUS_LABELS):
            continue
        if [w for w in WORD.findall(text) if w not in NAMES]:
            problems.append(" ".join(text.split()))
    return problems


PROSE = re.compile(r"[A-Za-zÀ-ÿ]+(?: |[,.:;!?)] )\s*[A-Za-zÀ-ÿ(]+|(^|\s)[A-Z][a-z]+")
# A path, host, file or endpoint (/srv/borg, base.html, pages.jobs, root@host): not prose.
NOT_PROSE = re.compile(r"[\w.:@/%*-]*[./@][\w.:@/%*-]*")


def _prose(value):
    """A literal a person reads: words with spaces or punctuation between, or a capitalised word."""
    value = value[1:-1] if value[:1] in "'\"" else value
    return bool(PROSE.search(value.strip())) and not NOT_PROSE.fullmatch(value.strip())
