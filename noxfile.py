"""Sessions: `nox -s tests` (the test suite), `nox -s lint`, `nox -s bench` (benchmarks + report).

Each session installs the project into a fresh virtualenv, so a green run proves the install.
CI pins torch's CPU wheel through PIP_CONSTRAINT (see .ci/run); users are not pinned.
"""

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.default_venv_backend = "venv"


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.5")
    session.run("ruff", "check", "variants", "bench", "ablations", "tests", "noxfile.py")
