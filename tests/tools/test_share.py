"""Tests of tools.share (tests/e2e/test_share.py pushes and pulls for real)."""

from __future__ import annotations

import pytest

from tools.share import commands, main


def test_push_and_pull_move_the_data_and_with_a_git_remote_the_experiments():
    dvc = commands("push", git_remote=True)[0][:3]
    assert [c[3:] for c in commands("push", git_remote=True)] == [
        ["push"],
        ["exp", "push", "--all-commits", "origin"],
    ]
    assert [c[3:] for c in commands("pull", git_remote=True)] == [
        ["pull"],
        ["exp", "pull", "--all-commits", "--no-cache", "origin"],
    ]
    assert commands("pull", git_remote=False) == [dvc + ["pull"]]
    with pytest.raises(ValueError, match="no action 'sync'"):
        commands("sync", git_remote=True)


def test_dry_run_without_a_git_remote_says_so(tmp_path, monkeypatch, capsys):
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    monkeypatch.chdir(tmp_path)
    assert main(["push", "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == ["+ dvc push"]
    assert "no git remote 'origin'" in captured.err
