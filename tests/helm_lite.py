"""A small renderer for the Go-template subset installer/chart/ uses, so the
tests can render the chart without helm (not installed here).

Supported, with Go text/template's semantics for them: `{{- ` / ` -}}`
whitespace trimming, `.Values.a.b`, `.Chart.AppVersion`, `.` inside
`range`/`with`, `if`/`with`/`range`/`end` (no `else`), string literals,
parenthesised sub-calls, pipelines, and the functions `quote`, `printf`
(`%s` only), `join`, `default`, `toYaml`, `nindent`. Anything else raises,
so a template that strays from the subset fails the tests instead of being
rendered wrongly.
"""

import json
import re

import yaml

TOKEN = re.compile(r"{{(-?)\s*(.*?)\s*(-?)}}", re.S)


def _tokens(text):
    out, pos = [], 0
    for m in TOKEN.finditer(text):
        lit = text[pos:m.start()]
        if m.group(1):
            lit = lit.rstrip()
        if out and out[-1][0] == "action" and out[-1][2]:
            lit = lit.lstrip()
        out.append(("text", lit, False))
        out.append(("action", m.group(2), bool(m.group(3))))
        pos = m.end()
    lit = text[pos:]
    if out and out[-1][0] == "action" and out[-1][2]:
        lit = lit.lstrip()
    out.append(("text", lit, False))
    return out


def _parse(tokens, i=0, closing=False):
    nodes = []
    while i < len(tokens):
        kind, val, _ = tokens[i]
        i += 1
        if kind == "text":
            nodes.append(("text", val))
            continue
        word = val.split(None, 1)[0] if val else ""
        if word in ("if", "with", "range"):
            body, i = _parse(tokens, i, True)
            nodes.append((word, val.split(None, 1)[1], body))
        elif word == "end":
            if not closing:
                raise ValueError("unexpected {{ end }}")
            return nodes, i
        elif word in ("else", "define", "template", "include", "block"):
            raise ValueError(f"helm_lite does not support {word!r}")
        else:
            nodes.append(("expr", val))
    if closing:
        raise ValueError("missing {{ end }}")
    return nodes, i


def _split_args(s):
    args, cur, depth, q = [], "", 0, False
    for ch in s:
        if q:
            cur += ch
            if ch == '"':
                q = False
            continue
        if ch == '"':
            q = True
            cur += ch
        elif ch == "(":
            depth += 1
            cur += ch
        elif ch == ")":
            depth -= 1
            cur += ch
        elif ch.isspace() and depth == 0:
            if cur:
                args.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        args.append(cur)
    return args


def _split_pipe(s):
    parts, cur, depth, q = [], "", 0, False
    for ch in s:
        if ch == '"':
            q = not q
        if not q and ch == "(":
            depth += 1
        if not q and ch == ")":
            depth -= 1
        if ch == "|" and depth == 0 and not q:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


def _to_yaml(v):
    return yaml.safe_dump(v, default_flow_style=False, sort_keys=True).rstrip("\n")


FUNCS = {
    "quote": lambda *a: " ".join(json.dumps(str(x)) for x in a),
    "printf": lambda fmt, *a: fmt.replace("%s", "{}").format(*a),
    "join": lambda sep, lst: sep.join(str(x) for x in lst),
    "default": lambda d, v: v if v not in (None, "", [], {}, False) else d,
    "toYaml": _to_yaml,
    "nindent": lambda n, s: "\n" + "\n".join((" " * n + l) if l else l for l in s.split("\n")),
}


def _value(tok, ctx):
    if tok.startswith('"'):
        return json.loads(tok)
    if tok.startswith("("):
        return _eval(tok[1:-1], ctx)
    if re.fullmatch(r"-?\d+", tok):
        return int(tok)
    if tok == ".":
        return ctx["dot"]
    if tok.startswith("."):
        cur = ctx["dot"] if not tok.startswith((".Values", ".Chart", ".Release")) else ctx["root"]
        for part in tok[1:].split("."):
            cur = cur.get(part) if isinstance(cur, dict) else None
        return cur
    raise ValueError(f"helm_lite: unknown token {tok!r}")


def _call(args, ctx, piped=None):
    head = args[0]
    if head in FUNCS:
        vals = [_value(a, ctx) for a in args[1:]]
        if piped is not None:
            vals.append(piped[0])
        return FUNCS[head](*vals)
    if head.startswith("."):
        if len(args) != 1 or piped is not None:
            raise ValueError(f"helm_lite: cannot call {head}")
        return _value(head, ctx)
    if len(args) == 1 and piped is None:
        return _value(head, ctx)
    raise ValueError(f"helm_lite: unknown function {head!r}")


def _eval(expr, ctx):
    stages = _split_pipe(expr)
    v = _call(_split_args(stages[0]), ctx)
    for st in stages[1:]:
        v = _call(_split_args(st), ctx, piped=(v,))
    return v


def _render(nodes, ctx):
    out = []
    for n in nodes:
        if n[0] == "text":
            out.append(n[1])
        elif n[0] == "expr":
            v = _eval(n[1], ctx)
            out.append("" if v is None else (str(v).lower() if isinstance(v, bool) else str(v)))
        else:
            v = _eval(n[1], ctx)
            if not v:
                continue
            if n[0] == "if":
                out.append(_render(n[2], ctx))
            elif n[0] == "with":
                out.append(_render(n[2], {**ctx, "dot": v}))
            else:
                for item in v:
                    out.append(_render(n[2], {**ctx, "dot": item}))
    return "".join(out)


def render(template, values, chart):
    nodes, _ = _parse(_tokens(template))
    root = {"Values": values, "Chart": {"AppVersion": chart.get("appVersion"), "Name": chart.get("name"),
                                        "Version": chart.get("version")}}
    return _render(nodes, {"root": root, "dot": root})


def render_chart(chart_dir, overrides=None):
    """{template name: rendered text} with values.yaml merged with `overrides` (shallow)."""
    from pathlib import Path

    chart_dir = Path(chart_dir)
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    values = yaml.safe_load((chart_dir / "values.yaml").read_text())
    values.update(overrides or {})
    return {t.name: render(t.read_text(), values, chart) for t in sorted((chart_dir / "templates").glob("*.yaml"))}, values
