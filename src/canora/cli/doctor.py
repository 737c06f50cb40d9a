"""``canora doctor``: name the convention of mels, compare with a vocoder's MelSpec, fix where invertible."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from canora.cli.common import HelpFormatter, add_audio_limit_arg, add_model_arg, add_overwrite_arg


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor", formatter_class=HelpFormatter,
        help="diagnose mel conventions (log base, dB, normalisation, layout, padding, fmax) and fix them",
        description="Inspect .npy mels and name the convention they are in (natural log, log10, power dB, log1p, "
        "clamp, [-1, 1] or mean-variance normalised, power mel, (T, n_mels) layout; with --audio also center=True "
        "padding, another sample rate, fmax, HTK scale, peak normalisation), whether that matches the vocoder's "
        "MelSpec, and the conversion that fixes it. --fix -o DIR writes converted mels where the conversion is "
        "invertible and says why not where it is not.",
    )
    p.add_argument("input", type=Path, help="a .npy mel or a directory of them")
    g = p.add_mutually_exclusive_group()
    add_model_arg(g, "vocoder", bundled_default=False,
                  help="check against this vocoder's MelSpec (g_*, its directory, an export, or 'bundled')")
    g.add_argument("--config", default=None, help="check against this MelSpec: v1/v2/v3 or a config JSON (default v1)")
    p.add_argument("--audio", type=Path, default=None,
                   help="the recording(s) the mels were made from: an audio file, or a directory with <stem>.wav etc.; "
                   "enables the frame-count and re-extraction checks and measures the dB ref / gain")
    p.add_argument("--fix", action="store_true", help="write converted natural-log mels to -o")
    p.add_argument("--allow-approximate", action="store_true",
                   help="also apply approximate conversions (power mel or power dB -> magnitude)")
    p.add_argument("-o", "--out", type=Path, default=None, help="output directory for --fix")
    p.add_argument("--json", action="store_true", help="print the diagnoses as JSON")
    add_overwrite_arg(p)
    add_audio_limit_arg(p)
    p.set_defaults(run=run)


def _audio_for(audio: Path | None, stem: str) -> Path | None:
    from canora.io.audio import AUDIO_EXTENSIONS

    if audio is None:
        return None
    if audio.is_file():
        return audio
    for ext in AUDIO_EXTENSIONS:
        if (audio / f"{stem}{ext}").exists():
            return audio / f"{stem}{ext}"
    return None


def run(args: argparse.Namespace) -> int:
    from canora.cli.batch import run_batch
    from canora.cli.common import load_spec_arg, load_vocoder

    files = _check(args)
    if args.vocoder is not None:
        spec, against = load_vocoder(args.vocoder).spec, f"vocoder {args.vocoder}"
    else:
        spec, against = load_spec_arg(args.config or "v1"), f"config {args.config or 'v1'}"
    job = _Job(args, spec)
    res = run_batch(files, job.one, "doctor")
    return job.report(res, against)


def _check(args: argparse.Namespace) -> list[Path]:
    """The flags against each other, the inputs, and with --fix the outputs -> the mels to diagnose."""
    from canora.cli.common import check_outputs, list_inputs, require_dir_out
    from canora.errors import CanoraError
    from canora.io.files import check_output_dir

    if args.fix and args.out is None:
        raise CanoraError("--fix needs -o DIR for the converted mels")
    if args.out is not None and not args.fix:
        raise CanoraError("-o is where --fix writes the converted mels; add --fix, or leave -o out")
    if args.audio is not None and not args.audio.exists():
        raise CanoraError(f"{args.audio}: no such audio file or directory")
    files = list_inputs(args.input, (".npy",), lambda f: f.name.endswith(".f0.npy"))  # F0 tracks are no mels
    if args.fix:
        check_output_dir(args.input, args.out)
        require_dir_out(args.out, "doctor --fix")
        check_outputs([args.out / f"{f.stem}.npy" for f in files], args, inputs=files)
    return files


@dataclass
class _Job:
    """Each mel diagnosed (and with --fix, fixed where it can be) and reported; the counts for the last line."""

    args: argparse.Namespace
    spec: Any
    results: list[dict] = field(default_factory=list)
    bad: int = 0
    unfixed: int = 0

    def one(self, f: Path) -> float:
        import logging

        from canora.analysis.doctor import diagnose
        from canora.io.audio import read_audio
        from canora.io.melfiles import load_npy

        args = self.args
        mel = load_npy(f)
        apath = _audio_for(args.audio, f.stem)
        if args.audio is not None and apath is None:
            logging.getLogger("canora").warning("%s: no audio named %s.* in %s; blind checks only", f, f.stem,
                                                args.audio)
        wav, sr = read_audio(apath) if apath is not None else (None, None)
        diag = diagnose(mel, self.spec, name=str(f), audio=wav, audio_sr=sr)
        self.bad += not diag.matches
        entry = diag.to_dict()
        if args.fix and not diag.matches:
            self.fix(f, mel, diag, entry)
        self.results.append(entry)
        if not args.json:
            _say(diag.summary())
            if "not_fixed_because" in entry:
                _say(f"  NOT fixed: {entry['not_fixed_because']}")
            elif entry.get("fixed"):
                _say(f"  fixed -> {entry['fixed']}")
        return 0.0

    def fix(self, f: Path, mel: Any, diag: Any, entry: dict) -> None:
        from canora.analysis.doctor import apply_fix
        from canora.errors import MelError
        from canora.io.melfiles import save_mel

        out = self.args.out / f"{f.stem}.npy"
        try:
            save_mel(out, apply_fix(mel, diag, allow_approximate=self.args.allow_approximate),
                     overwrite=self.args.overwrite)
            entry["fixed"] = str(out)
        except MelError as e:
            self.unfixed += 1
            entry["fixed"] = None
            entry["not_fixed_because"] = str(e)

    def report(self, res: Any, against: str) -> int:
        """The diagnoses as JSON, or the last line (stdout) -> the exit status."""
        import json

        failed = [p.name for p, _ in res.failed]
        if self.args.json:
            print(json.dumps(self.results, indent=2))
        else:
            print(f"{res.done} mel(s) checked against {against}: {res.done - self.bad} match, {self.bad} do not"
                  + (f"; {self.unfixed} could not be fixed" if self.args.fix else "")
                  + (f"; {len(failed)} unreadable ({', '.join(failed)})" if failed else "")
                  + (f"; stopped after a write error; not attempted: {', '.join(p.name for p in res.not_done)}"
                     if res.not_done else ""))
        return 1 if (failed or res.not_done or self.unfixed or (self.bad and not self.args.fix)) else 0


def _say(line: str) -> None:
    """A line of a diagnosis on stdout, above the progress bar (when one is drawn)."""
    import sys

    from tqdm import tqdm

    tqdm.write(line, file=sys.stdout)
