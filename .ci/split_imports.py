"""Move the imports of notebook cells that mix imports with other code into a new cell just before each of them.

    python .ci/split_imports.py nbs/*.ipynb

nbdev's docs processing runs every cell that holds an import on its own, so a cell such as
`from x import f` + `y = f(sched)` fails there with a NameError (tests/test_docs.py checks that no such cell is left).
The split is pure: the import lines move, with the cell's `#|` directives, into a new cell placed before it (inside
a hidden-tests region they stay in one); exported cells and `#| eval: false` cells are left alone, as nbdev leaves
them. Run nbdev_clean on the notebooks afterwards.
"""
import ast
import json
import secrets
import sys

BEGIN_HIDDEN, END_HIDDEN = '### BEGIN HIDDEN TESTS', '### END HIDDEN TESTS'


def imports_to_move(src: str) -> list[ast.stmt]:
    "The import statements of a cell that nbdev would run on its own and that holds other code too (else [])."
    if 'nbdev_export()' in src: return []
    directives = [l.replace(' ', '') for l in src.splitlines() if l.startswith('#|')]
    if any('export' in d for d in directives) or '#|eval:false' in directives: return []
    try: nodes = list(ast.walk(ast.parse(src)))
    except SyntaxError: return []
    imports = [n for n in nodes if isinstance(n, (ast.Import, ast.ImportFrom))]
    return imports if imports and any(isinstance(n, (ast.Expr, ast.Assign)) for n in nodes) else []


def split_cell(src: str, imports: list[ast.stmt]) -> tuple[str, str]:
    "(the new cell's source, the cell's source without its imports)."
    lines = src.split('\n')
    take = set()
    for node in imports:
        block = lines[node.lineno - 1:node.end_lineno]
        if ';' in block[0].split('#')[0]: raise ValueError(f'an import shares its line with other code: {block[0]!r}')
        take.update(range(node.lineno - 1, node.end_lineno))
    hidden, start = set(), None
    for i, line in enumerate(lines):
        if line.strip() == BEGIN_HIDDEN: start = i
        elif line.strip() == END_HIDDEN and start is not None: hidden.update(range(start, i + 1)); start = None
    in_hidden = bool(take & hidden)
    if in_hidden and not take <= hidden: raise ValueError('imports both inside and outside a hidden-tests region')
    directives = [l for l in lines if l.startswith('#|')]
    moved = [lines[i].strip() for i in sorted(take)]          # nested imports move to the top level
    new = directives + ([BEGIN_HIDDEN] if in_hidden else []) + moved + ([END_HIDDEN] if in_hidden else [])
    rest = [l for i, l in enumerate(lines) if i not in take]
    k = sum(l.startswith('#|') for l in rest)
    j = k
    while j < len(rest) and not rest[j].strip(): j += 1      # no blank lines left where the imports were
    rest = rest[:k] + rest[j:]
    if k < len(rest) and rest[k].strip() == BEGIN_HIDDEN:
        m = k + 1
        while m < len(rest) and not rest[m].strip(): m += 1
        rest = rest[:k + 1] + rest[m:]
    return '\n'.join(new), '\n'.join(rest)


def in_form_of(text: str, like) -> str | list[str]:
    "`text` stored as `like` is: one string, or a list of lines."
    if isinstance(like, str): return text
    lines = text.split('\n')
    return [l + '\n' for l in lines[:-1]] + [lines[-1]]


def split_notebook(path: str) -> int:
    nb, cells, n = json.load(open(path)), [], 0
    for cell in nb['cells']:
        src = ''.join(cell['source']) if cell['cell_type'] == 'code' else ''
        imports = imports_to_move(src) if src else []
        if imports:
            new_src, rest = split_cell(src, imports)
            cells.append({'cell_type': 'code', 'execution_count': None, 'id': secrets.token_hex(4), 'metadata': {},
                          'outputs': [], 'source': in_form_of(new_src, cell['source'])})
            cell['source'] = in_form_of(rest, cell['source']); n += 1
        cells.append(cell)
    if n:
        nb['cells'] = cells
        with open(path, 'w') as f: json.dump(nb, f, indent=1, ensure_ascii=False); f.write('\n')
    return n


if __name__ == '__main__':
    if len(sys.argv) < 2: sys.exit(__doc__)
    for p in sys.argv[1:]:
        if n := split_notebook(p): print(f'{p}: {n} cell(s) split')
