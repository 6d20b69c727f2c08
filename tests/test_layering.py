"""The house rules, checked: every reference behaviour a comment cites is explained in
docs/reference.md, and the package's layering holds: every import inside ``fbrs_jax`` (module
level or inside a function) goes down or sideways as ``MAY_IMPORT`` says, never up:

    clicks, unpickling, configs  (value types and helpers every layer shares)
    models <- brs <- inference <- eval <- demo        convert, data and train beside them
"""
from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / 'fbrs_jax'
BASE = {'clicks', 'unpickling', 'configs'}
MAY_IMPORT = {
    **{b: set() for b in BASE},
    'models': BASE,
    'convert': BASE | {'models'},
    'brs': BASE | {'models'},
    'inference': BASE | {'models', 'brs'},
    'data': BASE,
    'train': BASE | {'models', 'data', 'convert'},
    'eval': BASE | {'models', 'convert', 'brs', 'inference', 'data'},
    'demo': BASE | {'models', 'convert', 'brs', 'inference', 'data', 'eval'},
}
TOP = {'cli', '__init__'}            # the command line and the public API may import anything


def unit(module: str) -> str:
    """'fbrs_jax.eval.clicker' -> 'eval'."""
    parts = module.split('.')
    return parts[1] if len(parts) > 1 else '__init__'


def imports(path: pathlib.Path, source: str) -> set[str]:
    """The fbrs_jax modules ``source`` (the file at ``path``) imports."""
    package = ['fbrs_jax', *path.relative_to(PACKAGE).with_suffix('').parts[:-1]]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = '.'.join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ''
            names = [target] if node.module else [f'{target}.{a.name}' for a in node.names]
            found.update(n for n in names if n.startswith('fbrs_jax'))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith('fbrs_jax'))
    return found


def violations(files: dict[pathlib.Path, str]) -> list[str]:
    out = []
    for path, source in files.items():
        rel = path.relative_to(PACKAGE)
        src = rel.with_suffix('').parts[0]
        if src in TOP:
            continue
        assert src in MAY_IMPORT, f'{rel}: a unit the layering does not place; add it to MAY_IMPORT'
        for target in sorted(imports(path, source)):
            dst = unit(target)
            if dst != src and dst not in MAY_IMPORT[src]:
                out.append(f'{rel} imports {target} ({src} -> {dst})')
    return out


def test_no_import_goes_up_a_layer():
    files = {p: p.read_text() for p in PACKAGE.rglob('*.py')}
    assert not violations(files), '\n'.join(violations(files))


def test_the_check_sees_upward_and_function_level_imports():
    files = {PACKAGE / 'brs' / 'objective.py': 'from ..eval.clicker import Clicker\n',
             PACKAGE / 'data' / 'readers.py': 'def f():\n    from fbrs_jax.convert import pth\n',
             PACKAGE / 'inference' / 'step.py': 'from ..brs import spec\nfrom .. import clicks\n'}
    assert violations(files) == ['brs/objective.py imports fbrs_jax.eval.clicker (brs -> eval)',
                                 'data/readers.py imports fbrs_jax.convert (data -> convert)']


def test_every_cited_reference_behaviour_is_explained_in_docs():
    """Comments cite the reference's behaviours as ``SPEC §x.y`` (or ranges ``§x.y-z.w``) and trap
    codes ``Tn``; each must have its section in docs/reference.md, which a clone has."""
    import re
    root = PACKAGE.parent
    headings = set(re.findall(r'^## (SPEC §[\d.]+|SPEC appendix|T\d+)\b', (root / 'docs' / 'reference.md').read_text(),
                              re.M))
    missing = set()
    for path in [*PACKAGE.rglob('*.py'), *(root / 'experiments').glob('*.py'), *(root / 'tests').glob('*.py')]:
        text = path.read_text()
        for start, end in re.findall(r'SPEC\s*§?\s*(\d+(?:\.\d+)*)(?:\s*[-–]\s*(\d+(?:\.\d+)*))?', text):
            missing.update(f'{path.name}: SPEC §{n}' for n in (start, end) if n and f'SPEC §{n}' not in headings)
        missing.update(f'{path.name}: T{n}' for n in re.findall(r'\bT(\d+)b?\b', text) if f'T{n}' not in headings)
    assert not missing, sorted(missing)
