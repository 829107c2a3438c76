"""Access to FMA's manual files: the released zips, or the same folders already extracted.

The manual dir holds `fma_metadata.zip` (or `fma_metadata/`) and `fma_<subset>.zip` (or
`fma_<subset>/`); paths go through `etils.epath`, so it may be local or on GCS. Every zip
member is BZIP2-compressed, which Python's `zipfile` reads. An `FmaArchive` is a small
picklable value so that decoding workers can each open it.
"""
import dataclasses
import functools
import zipfile

from etils import epath

METADATA_URL = "https://os.unil.cloud.switch.ch/fma/fma_metadata.zip"
AUDIO_URL = "https://os.unil.cloud.switch.ch/fma/fma_{subset}.zip"


class MissingFilesError(FileNotFoundError):
    """Raised when the manual dir lacks FMA's files; the message says what and where to get it."""


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
        """
        found, missing = {}, []
        for name, url in (("fma_metadata", METADATA_URL),
                          (f"fma_{subset}", AUDIO_URL.format(subset=subset))):
            zipped, folder = epath.Path(manual_dir) / (name + ".zip"), epath.Path(manual_dir) / name
            if zipped.is_file():
                found[name] = str(zipped)
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
        return cls(metadata=found["fma_metadata"], audio=found[f"fma_{subset}"], subset=subset)

    def read_metadata(self, filename: str) -> bytes:
        """The bytes of `tracks.csv` or `genres.csv`."""
        return _read(self.metadata, f"fma_metadata/{filename}")

    def audio_member(self, track_id: int) -> str:
        """The path of a track's MP3 inside the audio archive: `fma_small/000/000002.mp3`."""
        tid = f"{track_id:06d}"
        return f"fma_{self.subset}/{tid[:3]}/{tid}.mp3"

    def read_audio(self, track_id: int) -> bytes:
        """The MP3 bytes of one track. Raises FileNotFoundError (or KeyError) if it is absent."""
        return _read(self.audio, self.audio_member(track_id))


def _read(source: str, member: str) -> bytes:
    """Reads `member` (a path that starts with the archive's top folder) from a zip or folder."""
    if source.endswith(".zip"):
        return _open_zip(source).read(member)
    return (epath.Path(source).parent / member).read_bytes()


@functools.lru_cache(maxsize=4)
def _open_zip(path: str) -> zipfile.ZipFile:
    # One handle per process: decoding workers each open the zip once, not once per track.
    return zipfile.ZipFile(epath.Path(path).open("rb"))
