"""The command line: conversion, and one-line errors with exit codes."""
import pytest

from conftest import R34_PTH, requires_shared
from fbrs_jax.cli import main


@requires_shared
def test_convert_command(tmp_path, capsys):
    assert main(['convert', str(R34_PTH), str(tmp_path / 'r34')]) == 0
    assert 'resnet34_dh128, 23,361,100 values' in capsys.readouterr().out
    assert (tmp_path / 'r34' / 'model.json').exists()


def test_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(b'\x00' * 10)
    assert main(['convert', str(bad), str(tmp_path / 'out')]) == 1
    err = capsys.readouterr().err
    assert err.startswith('fbrs-jax: error: ') and err.count('\n') == 1 and 'bad.pth' in err
    with pytest.raises(SystemExit) as e:
        main(['convert'])
    assert e.value.code == 2
