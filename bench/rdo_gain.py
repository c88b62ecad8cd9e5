"""What rate–distortion optimized levels buy over plain rounding (RDQ, ANS coder).

Run: python bench/rdo_gain.py   (prints a Markdown table)
"""

from __future__ import annotations

import fedcodec
from fedcodec import RDQ
from fedcodec.tools.sample_updates import digits_mlp_update, laplace, student_t


def main() -> None:
    sources = {
        "Laplace 200k": laplace(200_000, seed=5),
        "Student-t(3) 200k": student_t(200_000, seed=5),
        "digits MLP update 115k": fedcodec.flatten(digits_mlp_update(hidden=1536, epochs=1))[0],
    }
    print("| update | target | uniform | rdo | change |")
    print("|---|---|---:|---:|---:|")
    for name, x in sources.items():
        for bpp in (0.5, 1.0, 2.0):
            r = fedcodec.measure(RDQ(bits_per_param=bpp), x)
            u = fedcodec.measure(RDQ(bits_per_param=bpp, levels="uniform"), x)
            print(
                f"| {name} | {bpp} bits/param | NMSE {u['nmse']:.4f} | NMSE {r['nmse']:.4f} "
                f"| {100 * (r['nmse'] / u['nmse'] - 1):+.1f} % |"
            )
        for nmse in (0.01, 0.05, 0.2):
            r = fedcodec.measure(RDQ(nmse=nmse), x)
            u = fedcodec.measure(RDQ(nmse=nmse, levels="uniform"), x)
            print(
                f"| {name} | NMSE {nmse} | {u['bits_per_param']:.3f} bits/param "
                f"| {r['bits_per_param']:.3f} bits/param "
                f"| {100 * (r['bits'] / u['bits'] - 1):+.1f} % |"
            )


if __name__ == "__main__":
    main()
