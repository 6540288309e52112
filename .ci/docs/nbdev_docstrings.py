"""Sphinx extension: read nbdev's Markdown-style docstrings (`code`, *emphasis*) as reStructuredText for autodoc."""
import re

_CODE = re.compile(r'(?<![`\\])`([^`\n]+)`(?!`)')


def markdown_to_rst(lines: list[str]) -> list[str]:
    "Single backticks become inline literals; a lone `*` or `|` outside them is escaped."
    out = []
    for line in lines:
        parts = _CODE.split(line)        # even indices: prose, odd: code
        for i in range(0, len(parts), 2):
            parts[i] = re.sub(r'(?<!\\)([*|])', r'\\\1', parts[i])
        # an inline literal must touch neither a letter nor a digit: `scale`x becomes ``scale``\ x
        code = lambda i, p: (('\\ ' if i > 0 and parts[i - 1][-1:].isalnum() else '') + f'``{p}``'
                             + ('\\ ' if i + 1 < len(parts) and parts[i + 1][:1].isalnum() else ''))
        out.append(''.join(p if i % 2 == 0 else code(i, p) for i, p in enumerate(parts)))
    return out


def _process(app, what, name, obj, options, lines):
    lines[:] = markdown_to_rst(lines)


def setup(app):
    app.connect('autodoc-process-docstring', _process)
    return {'parallel_read_safe': True}
