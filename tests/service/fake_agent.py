"""A stand-in for a coding-agent CLI, driven by its prompt: one instruction per line.

    print TEXT            write TEXT and a newline to stdout (flushed)
    sleep SECONDS         sleep
    wait PATH             block until PATH exists
    touch PATH            create PATH (to tell a test "I got here")
    write FILE TEXT       write TEXT to FILE in the checkout
    append PATH TEXT      append TEXT and a newline to PATH
    child PIDFILE         start a sleeping child in the same process group, record its pid
    env NAME PATH         write the value of environment variable NAME to PATH
    pwd PATH              write the working directory to PATH
    pid PATH              write this process's pid to PATH
    copy SRC DST          copy file SRC (``~`` is this process's HOME) to DST
    exit CODE             exit with CODE

``--dump PATH`` instead writes the prompt (the last argument, the file named by an
``@FILE`` argument, or stdin when there is none) to PATH byte for byte and does nothing else.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def _dump(path: str, args: list[str]) -> None:
    if args and args[0].startswith("@"):
        data = Path(args[0][1:]).read_bytes()
    else:
        data = os.fsencode(args[0]) if args else sys.stdin.buffer.read()
    Path(path).write_bytes(data)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--dump"]:
        _dump(argv[1], argv[2:])
        return 0
    prompt = argv[0] if argv else sys.stdin.read()
    for line in prompt.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "print":
            print(rest, flush=True)
        elif word == "sleep":
            time.sleep(float(rest))
        elif word == "wait":
            while not os.path.exists(rest):
                time.sleep(0.01)
        elif word == "touch":
            Path(rest).touch()
        elif word == "write":
            name, _, text = rest.partition(" ")
            Path(name).expanduser().write_text(text + "\n")
        elif word == "append":
            name, _, text = rest.partition(" ")
            with open(name, "a") as handle:
                handle.write(text + "\n")
        elif word == "child":
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
            Path(rest).write_text(str(child.pid))
        elif word == "env":
            name, _, path = rest.partition(" ")
            Path(path).write_text(os.environ.get(name, "<unset>"))
        elif word == "pwd":
            Path(rest).write_text(os.getcwd())
        elif word == "copy":
            src, _, dst = rest.partition(" ")
            Path(dst).write_bytes(Path(src).expanduser().read_bytes())
        elif word == "pid":
            Path(rest).write_text(str(os.getpid()))
        elif word == "exit":
            return int(rest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
