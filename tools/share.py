"""Push or pull the pipeline's data and the DVC experiments: ``make push`` and ``make pull``.

    python -m tools.share push      # dvc push; dvc exp push --all-commits origin
    python -m tools.share pull      # dvc pull; dvc exp pull --all-commits --no-cache origin
    python -m tools.share pull --dry-run   # print the commands only

The data (the outputs ``dvc.lock`` names, from DVC's cache) goes to DVC's default remote: the
directory ``../privobfnet-dvc-remote`` beside the clone (``.dvc/config``, remote ``local``), so it
works offline. The experiments (git refs under ``refs/exps``, with their params and metrics) go to
the git remote ``origin`` when the clone has one, their outputs to the same DVC remote; a pull
fetches the refs only (``--no-cache``): the collector reads their params and metrics from git, and
``dvc exp apply <name>`` then ``dvc pull`` fetches one experiment's outputs when they are wanted.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys

GIT_REMOTE = "origin"


def has_git_remote(name: str = GIT_REMOTE) -> bool:
    """Whether the clone in the working directory has the git remote ``name``."""
    done = subprocess.run(["git", "remote", "get-url", name], capture_output=True, text=True)
    return done.returncode == 0


def commands(action: str, *, git_remote: bool) -> list[list[str]]:
    """The dvc commands of ``push`` or ``pull``; the experiments' only where there is a git remote."""
    dvc = [sys.executable, "-m", "dvc"]
    if action == "push":
        data, exps = ["push"], ["exp", "push", "--all-commits", GIT_REMOTE]
    elif action == "pull":
        data, exps = ["pull"], ["exp", "pull", "--all-commits", "--no-cache", GIT_REMOTE]
    else:
        raise ValueError(f"no action {action!r} (known: push, pull)")
    return [dvc + data] + ([dvc + exps] if git_remote else [])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.share", description=__doc__.split("\n")[0]
    )
    parser.add_argument("action", choices=("push", "pull"))
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args(argv)
    remote = has_git_remote()
    if not remote:
        print(
            f"no git remote {GIT_REMOTE!r}: the data only, no experiments "
            f"(`git remote add {GIT_REMOTE} <url>` to share them)",
            file=sys.stderr,
        )
    for command in commands(args.action, git_remote=remote):
        print("+ " + shlex.join(["dvc", *command[3:]]), flush=True)
        if not args.dry_run and subprocess.run(command).returncode != 0:
            print(f"failed: {shlex.join(['dvc', *command[3:]])}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
