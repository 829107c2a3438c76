"""Access to FMA's manual files: the released zips, or the same folders already extracted.

The manual dir holds `fma_metadata.zip` (or `fma_metadata/`) and `fma_<subset>.zip` (or
`fma_<subset>/`); paths go through `etils.epath`, so it may be local or on GCS. Every zip
member is BZIP2-compressed, which Python's `zipfile` reads. Each zip is opened once and shared
by the decoding threads.
"""
import dataclasses
import functools
import zipfile

from etils import epath

METADATA_URL = "https://os.unil.cloud.switch.ch/fma/fma_metadata.zip"
AUDIO_URL = "https://os.unil.cloud.switch.ch/fma/fma_{subset}.zip"


class MissingFilesError(FileNotFoundError):
    """Raised when the manual dir lacks FMA's files; the message says what and where to get it."""


class CorruptArchiveError(zipfile.BadZipFile):
    """A zip that cannot be opened (truncated or damaged); the message says to download it again."""


class CorruptMemberError(ValueError):
    """One zip member whose compressed data is damaged; the rest of the zip stays readable."""


@dataclasses.dataclass(frozen=True)
class FmaArchive:
    """Where one subset's metadata and audio live (each a `.zip` path or an extracted folder)."""
    metadata: str
    audio: str
    subset: str

    @classmethod
    def locate(cls, manual_dir: str, subset: str) -> "FmaArchive":
        """Finds the metadata and audio of `subset` in `manual_dir`, zipped or extracted.

        Raises:
          MissingFilesError: naming each missing file, where it was looked for, and its URL.
          CorruptArchiveError: a zip is truncated or damaged (checked here, before any decoding).
        """
        found, missing, urls = {}, [], {}
        for name, url in (("fma_metadata", METADATA_URL),
                          (f"fma_{subset}", AUDIO_URL.format(subset=subset))):
            zipped, folder = epath.Path(manual_dir) / (name + ".zip"), epath.Path(manual_dir) / name
            if zipped.is_file():
                found[name], urls[str(zipped)] = str(zipped), url
            elif folder.is_dir():
                found[name] = str(folder)
            else:
                missing.append(f"  {name}.zip (or the extracted folder {name}/): looked for "
                               f"{zipped} and {folder}; download it from {url}")
        if missing:
            raise MissingFilesError(
                f"FMA files missing from the manual dir {manual_dir}:\n" + "\n".join(missing)
                + "\nPut the files there exactly as released (see https://github.com/mdeff/fma), "
                "then build again.")
        # After the search, so that one error lists every missing file.
        for path, url in urls.items():
            try:
                _open_zip(path)
            except zipfile.BadZipFile as e:
                raise CorruptArchiveError(
                    f"{path} is truncated or corrupt ({e}): delete it and download it again "
                    f"from {url}") from e
        return cls(metadata=found["fma_metadata"], audio=found[f"fma_{subset}"], subset=subset)

    def read_metadata(self, filename: str) -> bytes:
        """The bytes of `tracks.csv` or `genres.csv`."""
        return _read(self.metadata, f"fma_metadata/{filename}")

    def metadata_name(self, filename: str) -> str:
        """How messages name `tracks.csv` or `genres.csv`: its path, or its member and zip."""
        if self.metadata.endswith(".zip"):
            return f"fma_metadata/{filename} in {self.metadata}"
        return f"{self.metadata}/{filename}"

    def audio_member(self, track_id: int) -> str:
        """The path of a track's MP3 inside the audio archive: `fma_small/000/000002.mp3`."""
        tid = f"{track_id:06d}"
        return f"fma_{self.subset}/{tid[:3]}/{tid}.mp3"

    def read_audio(self, track_id: int) -> bytes:
        """The MP3 bytes of one track.

        Raises:
          FileNotFoundError or KeyError: the track is absent.
          CorruptMemberError: its zip member's compressed data is damaged.
        """
        return _read(self.audio, self.audio_member(track_id))


def _read(source: str, member: str) -> bytes:
    """Reads `member` (a path that starts with the archive's top folder) from a zip or folder."""
    if not source.endswith(".zip"):
        return (epath.Path(source).parent / member).read_bytes()
    zip_file = _open_zip(source)
    try:
        return zip_file.read(member)
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        # zipfile reports a bad header or CRC as BadZipFile and data cut short as EOFError; the
        # bz2 decompressor reports damaged data as an OSError without an errno. An OSError with
        # an errno is a real read error of the zip file, which must stop the build.
        if isinstance(e, OSError) and e.errno is not None:
            raise
        raise CorruptMemberError(f"corrupt zip member {member} in {source}: {e}") from e


@functools.lru_cache(maxsize=4)
def _open_zip(path: str) -> zipfile.ZipFile:
    """The zip at `path`, opened once: `ZipFile` serialises its threads' reads with a lock."""
    f = epath.Path(path).open("rb")
    try:
        return zipfile.ZipFile(f)
    except zipfile.BadZipFile:
        f.close()
        raise
