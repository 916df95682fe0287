"""The paper's reported numbers (Tables 1, 2, 7, 8 at the default K), for side-by-side tables.

Table 1: trajectory error, mean (std in parentheses, as printed). Table 2: field error and
SSIM. Tables 7-8 (K = 10 column): field and trajectory error for DNO and TGC.
"""

METHODS = ("scratch", "maml", "reptile", "anil", "shift", "fw", "ro", "mr")

_T1 = {  # mass-spring, pendulum, duffing, kepler
    "scratch": (0.750, 0.839, 0.821, 0.497),
    "maml": (0.375, 0.569, 0.679, 0.214),
    "reptile": (0.300, 0.605, 0.403, 0.510),
    "anil": (0.323, 2.227, 0.644, 0.329),
    "shift": (0.183, 0.186, 0.140, 0.110),
    "fw": (0.086, 0.200, 0.071, 0.220),
    "ro": (0.049, 0.163, 0.060, 0.088),
    "mr": (0.058, 0.146, 0.048, 0.061),
}
_T2 = {  # (field, ssim) for mass-spring, pendulum, duffing
    "scratch": ((0.846, 0.126), (0.889, 0.273), (0.758, 0.269)),
    "maml": ((2.242, 0.129), (0.957, 0.447), (0.976, 0.416)),
    "reptile": ((0.336, 0.658), (0.654, 0.422), (0.356, 0.787)),
    "anil": ((0.328, 0.794), (1.144, 0.496), (0.979, 0.518)),
    "shift": ((0.163, 0.918), (0.140, 0.947), (0.111, 0.977)),
    "fw": ((0.130, 0.936), (0.151, 0.898), (0.123, 0.985)),
    "ro": ((0.107, 0.963), (0.125, 0.946), (0.117, 0.989)),
    "mr": ((0.103, 0.962), (0.120, 0.953), (0.114, 0.991)),
}
_T78 = {  # (field, trajectory) at K = 10 for dno, tgc
    "scratch": ((0.7688, 0.8878), (0.7116, 0.5864)),
    "maml": ((0.7348, 0.7723), (0.3740, 0.1672)),
    "reptile": ((0.9467, 0.9419), (0.5382, 0.3586)),
    "anil": ((81.181, 210.38), (0.3868, 0.2056)),
    "shift": ((0.1431, 0.1679), (0.2328, 0.1371)),
    "fw": ((0.6761, 0.1660), (0.3665, 0.1059)),
    "ro": ((0.0712, 0.0841), (0.2460, 0.1100)),
    "mr": ((0.1158, 0.1674), (0.2307, 0.1056)),
}
_HAM = ("mass-spring", "pendulum", "duffing", "kepler")
_GEN = ("dno", "tgc")


def paper_value(system: str, method: str, metric: str) -> float | None:
    """The paper's number for (system, method, metric), or None where it reports none."""
    if system in _HAM:
        i = _HAM.index(system)
        if metric == "trajectory_error":
            return _T1[method][i]
        if i < 3 and metric in ("field_error", "ssim"):
            return _T2[method][i][0 if metric == "field_error" else 1]
    if system in _GEN:
        i = _GEN.index(system)
        if metric in ("field_error", "trajectory_error"):
            return _T78[method][i][0 if metric == "field_error" else 1]
    return None
