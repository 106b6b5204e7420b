"""Build the CUDA backend's sources for the CPU emulator (cuda_runtime.h, emu.cpp beside this file):
rewrites every `kernel<<<grid, block, smem, stream>>>(args);` into `emu::launch(...)`, compiles the .cu
files as C++14 with the host compiler, links them with the C loader into OUT/libmfe_cuda.so, which
engine/cuda.py loads through MFE_CUDA_LIB. `--dp4a` compiles the __dp4a paths (as for sm_61+), else the
plain ones (sm_53's). Used by tests/test_cuda.py to run the GPU tests' checks on the kernels' own source
where no GPU is present; `make cuda-emu`."""
from __future__ import annotations

import pathlib
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

HERE = pathlib.Path(__file__).resolve().parent
CUDA = HERE.parent
ROOT = CUDA.parent.parent
LAUNCH = re.compile(r"([A-Za-z_]\w*(?:<[^;<>]*>)?)<<<(.*?)>>>\((.*?)\);", re.S)


def split_top(s: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return out + [cur.strip()]


def rewrite(src: str) -> str:
    def sub(m: re.Match) -> str:
        cfg = split_top(m.group(2))
        cfg += ["0", "0"][len(cfg) - 2:] if len(cfg) < 4 else []
        text = f"emu::launch(dim3({cfg[0]}), dim3({cfg[1]}), {cfg[2]}, {cfg[3]}, [&] {{ {m.group(1)}({m.group(3)}); }});"
        return text + "\n" * m.group(0).count("\n")  # keep line numbers
    return LAUNCH.sub(sub, src)


def main(argv: list[str]) -> int:
    out = pathlib.Path(argv[0]).resolve()
    dp4a = "--dp4a" in argv
    (out / "src").mkdir(parents=True, exist_ok=True)
    inc = [f"-I{HERE}", f"-I{ROOT / 'cbackend' / 'include'}", f"-I{ROOT / 'cbackend' / 'src'}", f"-I{CUDA}"]
    cxx = ["g++", "-std=c++14", "-O1", "-g", "-fPIC", "-pthread", "-U_FORTIFY_SOURCE", "-Wall", "-Wextra", "-Wno-unused-parameter",
           "-Wno-unused-function", "-Wno-unknown-pragmas", "-Wno-clobbered", "-DMFE_CUDA_EMU", "-DMFE_CUDA_ARCHS=\"emu\""] + (["-D__CUDA_ARCH__=900"] if dp4a else [])
    cc = ["gcc", "-std=c11", "-O1", "-g", "-fPIC", "-DMFE_FORCE_SCALAR", "-Wno-unknown-pragmas"]
    jobs = []
    for cu in sorted(CUDA.glob("*.cu")):
        cpp = out / "src" / (cu.stem + ".cpp")
        cpp.write_text(f'#line 1 "{cu}"\n' + rewrite(cu.read_text()))
        jobs.append(cxx + inc + ["-c", str(cpp), "-o", str(out / "src" / (cu.stem + ".o"))])
    jobs.append(cxx + inc + ["-c", str(HERE / "emu.cpp"), "-o", str(out / "src" / "emu.o")])
    for c in sorted((ROOT / "cbackend" / "src").glob("*.c")) + sorted(CUDA.glob("*.c")):
        jobs.append(cc + inc[1:] + ["-c", str(c), "-o", str(out / "src" / f"c_{c.stem}.o")])
    with ThreadPoolExecutor(2) as ex:
        for p in ex.map(lambda j: subprocess.run(j, capture_output=True, text=True), jobs):
            if p.returncode or p.stderr.strip():
                sys.stderr.write(p.stderr)
            if p.returncode:
                return 1
    objs = sorted(str(o) for o in (out / "src").glob("*.o"))
    p = subprocess.run(["g++", "-shared", "-pthread", *objs, "-o", str(out / "libmfe_cuda.so"), "-lm"],
                       capture_output=True, text=True)
    sys.stderr.write(p.stderr)
    return p.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
