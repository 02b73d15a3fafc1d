"""ribat release: release keys, and the signed bundles a provisioned node takes."""

from pathlib import Path

import click

from ribat.cli.common import echo_json, json_option, size


@click.group("release")
def release_group() -> None:
    """Firmware releases: a bundle of builds, signed with a key the cell's roster lists."""


@release_group.command("key")
@click.option(
    "--out",
    "-o",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The secret key's file, NAME.key (NAME.pub is written beside it).",
)
def key(out: Path) -> None:
    """Make a release key. Keep NAME.key on the machine that signs releases; put NAME.pub
    in the cell's roster with `ribat cell roster release add`."""
    from ribat.deploy import bundle

    public = bundle.new_key(out)
    click.echo(public.hex())
    click.echo(
        f"release key in {out} (keep it private); its public half in {out.with_suffix('.pub')}",
        err=True,
    )


@release_group.command("build")
@click.option(
    "--version", "version", required=True, metavar="X.Y.Z", help="The release's version."
)
@click.option("--out", "-o", "out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--board",
    "-b",
    "board_names",
    multiple=True,
    metavar="BOARD",
    help="A board to build for (repeatable). Default: every board ribat knows.",
)
@click.option(
    "--mpy",
    multiple=True,
    metavar="MAJOR.MINOR",
    help="A .mpy format to build for (repeatable). Default: this host's mpy-cross's.",
)
@click.option(
    "--source",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Firmware tree to build instead of the one shipped with ribat.",
)
@click.option(
    "--min-version",
    metavar="X.Y.Z",
    help="The oldest release this one may replace: older nodes take that one first.",
)
def build(
    version: str,
    out: Path,
    board_names: tuple[str, ...],
    mpy: tuple[str, ...],
    source: Path | None,
    min_version: str | None,
) -> None:
    """Build an unsigned release bundle (sign it with `ribat release sign`)."""
    from ribat.deploy import bundle
    from ribat.device import boards

    release = bundle.build(
        version,
        list(board_names) or boards.names(),
        list(mpy) or [bundle.default_mpy()],
        source,
        min_version,
    )
    bundle.write(release, out)
    targets = release.manifest["targets"]
    click.echo(
        f"release {version}: {len(targets)} builds ({size(len(release.encode()))}) in {out}; "
        "unsigned: sign it with `ribat release sign`",
        err=True,
    )


@release_group.command("sign")
@click.argument("bundle_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--key",
    "key_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The release key (NAME.key).",
)
def sign(bundle_file: Path, key_file: Path) -> None:
    """Sign BUNDLE_FILE with a release key, in place."""
    from ribat.deploy import bundle

    signed = bundle.sign(bundle.read(bundle_file), key_file)
    bundle.write(signed, bundle_file)
    click.echo(
        f"release {signed.version} signed by key {signed.signer_key[:16]}…: "
        f"flash it with `ribat flash --bundle {bundle_file}`",
        err=True,
    )


@release_group.command("show")
@click.argument("bundle_file", type=click.Path(dir_okay=False, path_type=Path))
@json_option("The bundle as JSON")
def show(bundle_file: Path, as_json: bool) -> None:
    """What a bundle holds: its version, its builds, who signed it."""
    from ribat.deploy import bundle
    from ribat.results import Release, ReleaseBuild

    release = bundle.read(bundle_file)
    m = release.manifest
    if as_json:
        builds = [ReleaseBuild(t["board"], t["mpy"], t["build"], t["size"]) for t in m["targets"]]
        echo_json(Release(m["firmware"], m.get("revision"), m.get("min_version"),
                          release.signer_key or None, builds))  # fmt: skip
        return
    click.echo(f"release {m['firmware']} (revision {m.get('revision')})")
    click.echo(f"replaces: {m.get('min_version') or 'any older release'}")
    click.echo(f"signed by: {release.signer_key or '(unsigned)'}")
    for t in m["targets"]:
        click.echo(f"  {t['board']:<24} .mpy v{t['mpy']}  build {t['build']}  {size(t['size'])}")
