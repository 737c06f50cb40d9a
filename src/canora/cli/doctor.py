"""``canora doctor``: name the convention of mels, compare with a vocoder's MelSpec, fix where invertible."""

from __future__ import annotations

import argparse
from pathlib import Path

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
    import json
    import logging
    import sys

    from canora.analysis.doctor import apply_fix, diagnose
    from canora.cli.common import check_outputs, list_inputs, load_spec_arg, load_vocoder, require_dir_out
    from canora.errors import CanoraError, MelError
    from canora.io.audio import read_audio
    from canora.io.files import check_output_dir
    from canora.io.melfiles import load_npy, save_mel

    log = logging.getLogger("canora")
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
    if args.vocoder is not None:
        spec, against = load_vocoder(args.vocoder).spec, f"vocoder {args.vocoder}"
    else:
        spec, against = load_spec_arg(args.config or "v1"), f"config {args.config or 'v1'}"
    results, bad, unfixed, failed = [], 0, 0, []
    for f in files:
        try:
            mel = load_npy(f)
            apath = _audio_for(args.audio, f.stem)
            if args.audio is not None and apath is None:
                log.warning("%s: no audio named %s.* in %s; blind checks only", f, f.stem, args.audio)
            wav, sr = read_audio(apath) if apath is not None else (None, None)
            diag = diagnose(mel, spec, name=str(f), audio=wav, audio_sr=sr)
        except CanoraError as e:
            if len(files) == 1:
                raise
            failed.append(f.name)
            print(f"skipped: {' '.join(str(e).split())}", file=sys.stderr)
            continue
        bad += not diag.matches
        entry = diag.to_dict()
        if args.fix and not diag.matches:
            try:
                save_mel(args.out / f"{f.stem}.npy", apply_fix(mel, diag, allow_approximate=args.allow_approximate),
                         overwrite=args.overwrite)
                entry["fixed"] = str(args.out / f"{f.stem}.npy")
            except MelError as e:
                unfixed += 1
                entry["fixed"] = None
                entry["not_fixed_because"] = str(e)
        results.append(entry)
        if not args.json:
            print(diag.summary())
            if "not_fixed_because" in entry:
                print(f"  NOT fixed: {entry['not_fixed_because']}")
            elif entry.get("fixed"):
                print(f"  fixed -> {entry['fixed']}")
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"{len(files) - len(failed)} mel(s) checked against {against}: {len(files) - len(failed) - bad} match, "
              f"{bad} do not" + (f"; {unfixed} could not be fixed" if args.fix else "")
              + (f"; {len(failed)} unreadable ({', '.join(failed)})" if failed else ""))
    return 1 if (failed or unfixed or (bad and not args.fix)) else 0
