"""Object-detection datasets: read COCO JSON and YOLO text labels, write COCO, validate.

Both formats are read into one in-memory :class:`DetectionDataset`: images (path, size,
content hash), annotations (a box in absolute pixels ``x, y, width, height`` from the
image's top-left corner, and a category id) and categories. :func:`write_coco` writes any
dataset as COCO JSON, so a YOLO set becomes COCO with ``read_yolo`` + ``write_coco``.

:func:`validate_detection` decodes every image fully and checks images, boxes, classes and
the pairing of images with labels; it returns a :class:`DetectionReport` of every problem
found, each an error or a warning. :func:`require_valid` turns a report with errors into a
:class:`~loopline.errors.DataError` naming each file, so a pipeline step stops the run.

Syntax errors (a YOLO line that is not ``class cx cy w h``, COCO JSON without its
``images``/``annotations``/``categories`` lists) stop the reading itself with a
:class:`~loopline.errors.DataError` that lists every bad line or entry at once.

Pillow is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from loopline.core.files import write_atomic
from loopline.data.folders import require_folder
from loopline.data.images import IMAGE_EXTENSIONS
from loopline.data.images import _reason as _pillow_reason
from loopline.errors import DataError

__all__ = [
    "Annotation",
    "Category",
    "DetectionDataset",
    "DetectionFormat",
    "DetectionImage",
    "DetectionReport",
    "DetectionRules",
    "Problem",
    "read_coco",
    "read_detection",
    "read_yolo",
    "require_valid",
    "validate_detection",
    "write_coco",
]

DetectionFormat = Literal["coco", "yolo"]
Severity = Literal["error", "warning"]

_MAX_LISTED = 20


@dataclass(frozen=True)
class Category:
    """A class of objects: its id (what annotations refer to) and its name."""

    id: int
    name: str


@dataclass(frozen=True)
class DetectionImage:
    """One image of a dataset.

    ``file_name`` is relative to the dataset's ``images_dir`` (what COCO's ``file_name``
    holds); ``path`` is the absolute file. ``width``/``height`` are the sizes the labels
    refer to: COCO's declared ones, or the file's for YOLO (0 when the file cannot be
    identified). ``sha256`` is of the file's bytes (empty when the file is missing).
    ``label_file`` is the YOLO label file relative to the dataset root (None: the image has
    none; always None for COCO).
    """

    id: int
    file_name: str
    path: Path
    width: int
    height: int
    sha256: str
    label_file: str | None = None


@dataclass(frozen=True)
class Annotation:
    """One box: ``bbox`` is ``(x, y, width, height)`` in pixels from the top-left corner."""

    id: int
    image_id: int
    category_id: int
    bbox: tuple[float, float, float, float]


@dataclass
class DetectionDataset:
    """A detection dataset in memory, whatever format it was read from.

    ``labels_without_images`` names labels that point at no image: YOLO label files with
    no image beside them (relative to ``root``), or COCO annotations whose ``image_id`` is
    not among the images.
    """

    root: Path
    images_dir: Path
    format: DetectionFormat
    categories: list[Category]
    images: list[DetectionImage]
    annotations: list[Annotation]
    labels_without_images: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DetectionRules:
    """Thresholds of :func:`validate_detection`.

    ``min_side``/``max_side`` bound both image sides in pixels; ``modes`` are the Pillow
    modes accepted (``RGB`` colour, ``L`` grayscale); a box may reach ``box_tolerance``
    pixels outside its image (YOLO's normalised coordinates are rounded to 6 digits); a
    class with fewer than ``min_class_share`` of all boxes gets a warning.
    """

    min_side: int = 32
    max_side: int = 10_000
    modes: tuple[str, ...] = ("RGB", "L")
    box_tolerance: float = 1.0
    min_class_share: float = 0.01


@dataclass(frozen=True)
class Problem:
    """One finding: ``kind`` (e.g. ``box_outside``), the file (relative to the dataset root
    where possible), what is wrong, and whether it stops a run (``error``) or not."""

    kind: str
    file: str
    detail: str
    severity: Severity


@dataclass
class DetectionReport:
    """What :func:`validate_detection` found.

    ``class_counts`` holds the number of boxes per class name (every category, zero
    included); ``problems`` every finding, errors first.
    """

    root: str
    format: DetectionFormat
    images: int
    annotations: int
    class_counts: dict[str, int]
    problems: list[Problem]

    @property
    def errors(self) -> list[Problem]:
        """The problems that stop a run."""
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        """The problems worth a look that do not stop a run."""
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def passed(self) -> bool:
        """True when the report has no errors (warnings allowed)."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (``passed``, counts, ``class_counts``, ``problems``)."""
        return {
            "root": self.root,
            "format": self.format,
            "passed": self.passed,
            "images": self.images,
            "annotations": self.annotations,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "class_counts": dict(self.class_counts),
            "problems": [asdict(p) for p in self.problems],
        }

    def format_text(self) -> str:
        """The report as lines of text: a summary, then one line per problem."""
        verdict = "passed" if self.passed else "FAILED"
        used = {name: n for name, n in self.class_counts.items() if n}
        lines = [
            f"{self.format} dataset {self.root}: {verdict}",
            f"{self.images} images, {self.annotations} boxes, "
            f"{len(used)} of {len(self.class_counts)} classes used; "
            f"{len(self.errors)} errors, {len(self.warnings)} warnings",
        ]
        if used:
            top = sorted(used.items(), key=lambda item: (-item[1], item[0]))
            lines.append("boxes per class: " + ", ".join(f"{k} {v}" for k, v in top))
        lines.extend(f"{p.severity}: {p.kind}: {p.file}: {p.detail}" for p in self.problems)
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# reading


def read_detection(
    path: str | Path,
    format: DetectionFormat | None = None,
    *,
    images_dir: str | Path | None = None,
) -> DetectionDataset:
    """Read a COCO or YOLO dataset, guessing the format when ``format`` is None.

    A ``.json`` file is COCO; a folder with ``labels/`` is YOLO; a folder with exactly one
    ``.json`` file (directly or in ``annotations/``) is COCO. For COCO, ``images_dir``
    defaults to the folder's ``images/`` when it exists, else the JSON file's folder.
    """
    base = Path(path).expanduser()
    if not base.exists():
        raise DataError(
            f"dataset not found: {base}",
            hint="pass a YOLO folder (images/ and labels/) or a COCO JSON file or its folder",
        )
    if format not in (None, "coco", "yolo"):
        raise DataError(
            f"unknown detection format {format!r}: expected 'coco' or 'yolo'",
            hint="coco reads a COCO JSON file; yolo reads images/ and labels/ folders",
        )
    if format == "yolo" or (format is None and base.is_dir() and (base / "labels").is_dir()):
        return read_yolo(base)
    json_file = base if base.is_file() else _find_coco_json(base)
    if images_dir is None and base.is_dir() and (base / "images").is_dir():
        images_dir = base / "images"
    return read_coco(json_file, images_dir=images_dir)


def read_yolo(root: str | Path) -> DetectionDataset:
    """Read a YOLO dataset: ``root/images/**`` with ``root/labels/**`` beside them.

    The label of ``images/train/a.jpg`` is ``labels/train/a.txt``: one box per line,
    ``class cx cy w h`` with the centre and size normalised to 0-1 by the image's size.
    Class names come from ``root/data.yaml`` (its ``names``, a list or an id-to-name map)
    or else ``root/classes.txt`` (one name per line; line 1 is class 0). Raises
    :class:`~loopline.errors.DataError` for a missing folder, missing class names, and
    label lines that are not five numbers (every bad line listed).
    """
    base = require_folder(
        root,
        name="YOLO dataset",
        expected="a folder for the YOLO dataset",
        holds="images/ and labels/",
    )
    images_dir, labels_dir = base / "images", base / "labels"
    for sub in (images_dir, labels_dir):
        if not sub.is_dir():
            raise DataError(
                f"not a YOLO dataset: {base} has no {sub.name}/ folder",
                hint="a YOLO dataset keeps images in images/ and one .txt per image in "
                "labels/ (same sub-folders); for COCO JSON pass --format coco",
            )
    categories = _yolo_categories(base)
    image_files: dict[str, Path] = {}
    for p in _image_files(images_dir):
        stem = p.relative_to(images_dir).with_suffix("").as_posix()
        if stem in image_files:  # a.jpg and a.png would share labels/a.txt
            raise DataError(
                f"two images share one label file name in {images_dir}: "
                f"{image_files[stem].name} and {p.name}",
                hint="rename or remove one of them: YOLO pairs images and labels by name",
            )
        image_files[stem] = p
    label_files = {
        p.relative_to(labels_dir).with_suffix("").as_posix(): p
        for p in _visible_files(labels_dir)
        if p.suffix.lower() == ".txt"
    }
    parsed: dict[str, list[tuple[int, float, float, float, float]]] = {}
    bad_lines: list[str] = []
    for stem, label_path in sorted(label_files.items()):
        parsed[stem] = _parse_yolo_file(label_path, base, bad_lines)
    if bad_lines:
        raise _listed_error(
            f"{len(bad_lines)} bad label lines in {labels_dir}",
            bad_lines,
            hint="each line must be `class cx cy w h`: an integer class id and four numbers "
            "(centre and size divided by the image's width and height); fix or remove them",
        )
    images: list[DetectionImage] = []
    annotations: list[Annotation] = []
    for image_id, (stem, image_path) in enumerate(sorted(image_files.items()), start=1):
        sha256, size = _hash_and_size(image_path)
        width, height = size or (0, 0)
        label = label_files.get(stem)
        images.append(
            DetectionImage(
                id=image_id,
                file_name=image_path.relative_to(images_dir).as_posix(),
                path=image_path.resolve(),
                width=width,
                height=height,
                sha256=sha256,
                label_file=label.relative_to(base).as_posix() if label else None,
            )
        )
        if size is None:
            continue  # boxes need the image's size; validation reports the unreadable file
        for cls, cx, cy, w, h in parsed.get(stem, []):
            box = ((cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height)
            annotations.append(Annotation(len(annotations) + 1, image_id, cls, box))
    orphans = sorted(
        label_files[stem].relative_to(base).as_posix() for stem in label_files.keys() - image_files
    )
    return DetectionDataset(
        root=base.resolve(),
        images_dir=images_dir.resolve(),
        format="yolo",
        categories=categories,
        images=images,
        annotations=annotations,
        labels_without_images=orphans,
    )


def read_coco(path: str | Path, *, images_dir: str | Path | None = None) -> DetectionDataset:
    """Read a COCO detection JSON file (``images``, ``annotations``, ``categories``).

    Image ``file_name``\\s are resolved against ``images_dir`` (default: the JSON file's
    folder). Boxes are COCO's ``bbox`` ``[x, y, width, height]`` in pixels. Raises
    :class:`~loopline.errors.DataError` when the file is not JSON or lacks a required field
    (every bad entry listed); images that are missing on disk are left to validation.
    """
    json_path = Path(path).expanduser()
    if not json_path.is_file():
        raise DataError(
            f"COCO annotation file not found: {json_path}",
            hint="pass the COCO JSON file (e.g. annotations/instances_train.json)",
        )
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(
            f"{json_path} is not valid JSON: {exc}",
            hint="a COCO file is one JSON object with images, annotations and categories lists",
        ) from None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(key), list) for key in ("images", "annotations", "categories")
    ):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise DataError(
            f"{json_path} is not COCO detection JSON: expected an object with the lists "
            f"'images', 'annotations' and 'categories', found {found}",
            hint="export the dataset as COCO (object detection) JSON",
        )
    base = Path(images_dir).expanduser() if images_dir is not None else json_path.parent
    bad: list[str] = []
    categories = [
        Category(int(c["id"]), str(c["name"]))
        for i, c in enumerate(data["categories"])
        if _has_fields(c, {"id": int, "name": str}, f"categories[{i}]", bad)
    ]
    raw_images = [
        im
        for i, im in enumerate(data["images"])
        if _has_fields(
            im, {"id": int, "file_name": str, "width": int, "height": int}, f"images[{i}]", bad
        )
    ]
    raw_annotations = [
        a
        for i, a in enumerate(data["annotations"])
        if _has_fields(
            a, {"id": int, "image_id": int, "category_id": int}, f"annotations[{i}]", bad
        )
        and _has_bbox(a, f"annotations[{i}]", bad)
    ]
    if bad:
        raise _listed_error(
            f"{len(bad)} malformed entries in {json_path}",
            bad,
            hint="COCO needs images {id, file_name, width, height}, annotations {id, image_id, "
            "category_id, bbox: [x, y, width, height]} and categories {id, name}",
        )
    images: list[DetectionImage] = []
    for im in raw_images:
        image_path = base / im["file_name"]
        sha256 = _sha256(image_path)
        images.append(
            DetectionImage(
                id=im["id"],
                file_name=im["file_name"],
                path=image_path.resolve(),
                width=im["width"],
                height=im["height"],
                sha256=sha256,
            )
        )
    known = {im.id for im in images}
    annotations: list[Annotation] = []
    orphans: list[str] = []
    for a in raw_annotations:
        if a["image_id"] not in known:
            orphans.append(f"{json_path.name}: annotation {a['id']} (image_id {a['image_id']})")
            continue
        x, y, w, h = (float(v) for v in a["bbox"])
        annotations.append(Annotation(a["id"], a["image_id"], a["category_id"], (x, y, w, h)))
    return DetectionDataset(
        root=json_path.resolve(),
        images_dir=base.resolve(),
        format="coco",
        categories=categories,
        images=images,
        annotations=annotations,
        labels_without_images=orphans,
    )


def write_coco(dataset: DetectionDataset, path: str | Path) -> Path:
    """Write ``dataset`` as COCO detection JSON at ``path``; returns the path.

    ``file_name``\\s stay relative to the dataset's ``images_dir`` (read the file back with
    ``read_coco(path, images_dir=dataset.images_dir)``). The file is written to a temporary
    name and renamed, so a reader never sees half of it.
    """
    target = Path(path).expanduser()
    if not target.parent.is_dir():
        raise DataError(
            f"cannot write {target}: the folder {target.parent} does not exist",
            hint="create the folder first, or pick another output path",
        )
    data = {
        "images": [
            {"id": im.id, "file_name": im.file_name, "width": im.width, "height": im.height}
            for im in dataset.images
        ],
        "annotations": [
            {
                "id": a.id,
                "image_id": a.image_id,
                "category_id": a.category_id,
                "bbox": list(a.bbox),
                "area": a.bbox[2] * a.bbox[3],
                "iscrowd": 0,
            }
            for a in dataset.annotations
        ],
        "categories": [{"id": c.id, "name": c.name} for c in dataset.categories],
    }
    write_atomic(target, json.dumps(data))
    return target


# ---------------------------------------------------------------------------------------------
# validation


def validate_detection(
    dataset: DetectionDataset, rules: DetectionRules = DetectionRules()
) -> DetectionReport:
    """Check every image and box of ``dataset``; returns the report (raises nothing).

    Errors: missing, unreadable or truncated images (each is decoded fully), a mode not in
    ``rules.modes``, a side outside ``min_side``-``max_side``, a COCO size that differs from
    the file's, boxes outside their image or with no area, class ids that are not
    categories, labels without an image. Warnings: images without labels, images with the
    same content, classes with less than ``min_class_share`` of the boxes, unused classes.
    """
    problems: list[Problem] = []

    def name(p: Path) -> str:
        for base in (dataset.root if dataset.root.is_dir() else None, dataset.images_dir):
            if base is not None and p.is_relative_to(base):
                return p.relative_to(base).as_posix()
        return str(p)

    boxes_per_image = Counter(a.image_id for a in dataset.annotations)
    by_id = {im.id: im for im in dataset.images}
    by_hash: dict[str, list[DetectionImage]] = defaultdict(list)
    for im in dataset.images:
        problems.extend(_check_image(im, name(im.path), dataset.format, rules))
        if im.sha256:
            by_hash[im.sha256].append(im)
        labelled = (
            im.label_file is not None if dataset.format == "yolo" else im.id in boxes_per_image
        )
        if not labelled:
            problems.append(
                Problem(
                    "image_without_labels", name(im.path), "no labels for this image", "warning"
                )
            )
    for label in dataset.labels_without_images:
        problems.append(
            Problem("label_without_image", label, "these labels belong to no image", "error")
        )
    category_ids = {c.id for c in dataset.categories}
    for a in dataset.annotations:
        image = by_id.get(a.image_id)
        if image is None:  # a dataset built in code rather than read from files
            problems.append(
                Problem("label_without_image", f"annotation {a.id}", "no such image", "error")
            )
            continue
        where = image.label_file or name(image.path)
        problems.extend(_check_box(a, image, where, category_ids, rules.box_tolerance))
    for copies in by_hash.values():
        if len(copies) > 1:
            names = [name(im.path) for im in copies]
            for n in names[1:]:
                problems.append(
                    Problem("duplicate_image", n, f"same content as {names[0]}", "warning")
                )
    class_counts, balance = _class_balance(dataset, rules.min_class_share)
    problems.extend(balance)
    problems.sort(key=lambda p: p.severity != "error")  # stable: errors first, order kept
    return DetectionReport(
        root=str(dataset.root),
        format=dataset.format,
        images=len(dataset.images),
        annotations=len(dataset.annotations),
        class_counts=class_counts,
        problems=problems,
    )


def require_valid(report: DetectionReport) -> None:
    """Raise :class:`~loopline.errors.DataError` listing every error of ``report``.

    Does nothing when the report has no errors (warnings do not stop a run).
    """
    errors = report.errors
    if not errors:
        return
    raise _listed_error(
        f"the detection dataset {report.root} has {len(errors)} errors",
        [f"{p.file} ({p.kind}: {p.detail})" for p in errors],
        hint="fix or remove those files, then read the dataset again "
        "(`loopline data check-detection DIR` prints the whole report)",
    )


# ---------------------------------------------------------------------------------------------
# helpers


def _check_image(im: DetectionImage, where: str, fmt: str, rules: DetectionRules) -> list[Problem]:
    """Decode ``im`` fully and check its mode and size."""
    from PIL import Image

    if not im.path.is_file():
        return [Problem("missing_image", where, f"no such file: {im.path}", "error")]
    try:
        with Image.open(im.path) as img:
            img.load()  # decode every pixel: a truncated file fails here
            mode, (width, height) = img.mode, img.size
    except Exception as exc:  # Pillow's decoders raise many kinds on corrupt data
        return [Problem("unreadable_image", where, _pillow_reason(exc), "error")]
    found: list[Problem] = []
    if mode not in rules.modes:
        found.append(
            Problem(
                "wrong_mode",
                where,
                f"mode {mode}, expected {' or '.join(rules.modes)} (convert the image)",
                "error",
            )
        )
    if min(width, height) < rules.min_side:
        found.append(
            Problem(
                "too_small",
                where,
                f"{width}x{height} px, the smaller side is under {rules.min_side} px",
                "error",
            )
        )
    if max(width, height) > rules.max_side:
        found.append(
            Problem(
                "too_large",
                where,
                f"{width}x{height} px, the larger side is over {rules.max_side} px",
                "error",
            )
        )
    if fmt == "coco" and (width, height) != (im.width, im.height):
        found.append(
            Problem(
                "size_mismatch",
                where,
                f"the file is {width}x{height} px, the annotations say {im.width}x{im.height}",
                "error",
            )
        )
    return found


def _check_box(
    a: Annotation, image: DetectionImage, where: str, category_ids: set[int], tolerance: float
) -> list[Problem]:
    found: list[Problem] = []
    x, y, w, h = a.bbox
    box = f"box {a.id} [x={x:.1f}, y={y:.1f}, w={w:.1f}, h={h:.1f}]"
    if a.category_id not in category_ids:
        found.append(
            Problem(
                "unknown_class",
                where,
                f"{box}: class id {a.category_id} is not among the {len(category_ids)} classes",
                "error",
            )
        )
    if not all(math.isfinite(v) for v in a.bbox) or w <= 0 or h <= 0:
        found.append(Problem("degenerate_box", where, f"{box}: no area", "error"))
    elif (
        x < -tolerance
        or y < -tolerance
        or x + w > image.width + tolerance
        or y + h > image.height + tolerance
    ):
        found.append(
            Problem(
                "box_outside",
                where,
                f"{box} reaches outside the {image.width}x{image.height} image",
                "error",
            )
        )
    return found


def _class_balance(
    dataset: DetectionDataset, min_share: float
) -> tuple[dict[str, int], list[Problem]]:
    counts = Counter(a.category_id for a in dataset.annotations)
    class_counts = {c.name: counts.get(c.id, 0) for c in dataset.categories}
    total = sum(counts.values())
    found: list[Problem] = []
    where = dataset.root.name
    for c in dataset.categories:
        n = counts.get(c.id, 0)
        if n and n / total < min_share:
            found.append(
                Problem(
                    "rare_class",
                    where,
                    f"class {c.name!r} has {n} of {total} boxes ({n / total:.2%}, under "
                    f"{min_share:.2%})",
                    "warning",
                )
            )
    unused = [c.name for c in dataset.categories if not counts.get(c.id)]
    if unused and dataset.annotations:
        shown = ", ".join(unused[:10]) + (
            f" and {len(unused) - 10} more" if len(unused) > 10 else ""
        )
        found.append(
            Problem(
                "unused_classes",
                where,
                f"{len(unused)} of {len(dataset.categories)} classes have no boxes: {shown}",
                "warning",
            )
        )
    return class_counts, found


def _yolo_categories(base: Path) -> list[Category]:
    data_yaml, classes_txt = base / "data.yaml", base / "classes.txt"
    if data_yaml.is_file():
        try:
            data = yaml.safe_load(data_yaml.read_text(encoding="utf-8")) or {}
        except (UnicodeDecodeError, yaml.YAMLError) as exc:
            raise DataError(
                f"{data_yaml} is not valid YAML: {' '.join(str(exc).split())}",
                hint="fix the file: `names:` is a list of class names or a map id: name",
            ) from None
        names = data.get("names") if isinstance(data, dict) else None
        if isinstance(names, list) and all(isinstance(n, str) for n in names):
            return [Category(i, n) for i, n in enumerate(names)]
        if isinstance(names, dict) and all(isinstance(k, int) for k in names):
            return [Category(k, str(v)) for k, v in sorted(names.items())]
        raise DataError(
            f"{data_yaml} has no class names: expected `names:` as a list of names or a map "
            f"of class id to name, found {names!r}",
            hint="add `names: [person, bicycle, ...]` (class 0 first)",
        )
    if classes_txt.is_file():
        names = [line.strip() for line in classes_txt.read_text(encoding="utf-8").splitlines()]
        return [Category(i, n) for i, n in enumerate(names) if n]
    raise DataError(
        f"no class names for the YOLO dataset {base}: expected data.yaml (with `names:`) or "
        "classes.txt (one name per line, class 0 first)",
        hint=f"write the class names to {classes_txt}",
    )


def _parse_yolo_file(
    path: Path, base: Path, bad: list[str]
) -> list[tuple[int, float, float, float, float]]:
    """The boxes of one label file; bad lines are appended to ``bad`` as ``file:line (why)``."""
    rows: list[tuple[int, float, float, float, float]] = []
    where = path.relative_to(base).as_posix()
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        bad.append(f"{where} (not UTF-8 text)")
        return rows
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            bad.append(f"{where}:{number} (expected 5 fields, found {len(fields)}: {line!r})")
            continue
        try:
            cls = int(fields[0])
            cx, cy, w, h = (float(v) for v in fields[1:])
        except ValueError:
            bad.append(f"{where}:{number} (not an integer class and four numbers: {line!r})")
            continue
        rows.append((cls, cx, cy, w, h))
    return rows


def _hash_and_size(path: Path) -> tuple[str, tuple[int, int] | None]:
    """sha256 of the file and its size from the image header (None: not an image)."""
    from PIL import Image

    try:
        data = path.read_bytes()
    except OSError:
        return "", None  # validation names the reason when it opens the file
    try:
        with Image.open(io.BytesIO(data)) as img:
            size: tuple[int, int] | None = img.size
    except Exception:  # the validation names the reason when it decodes the file
        size = None
    return hashlib.sha256(data).hexdigest(), size


def _sha256(path: Path) -> str:
    """sha256 of the file ("" when it cannot be read: validation names the reason)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def _image_files(folder: Path) -> list[Path]:
    return [p for p in _visible_files(folder) if p.suffix.lower() in IMAGE_EXTENSIONS]


def _visible_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _find_coco_json(folder: Path) -> Path:
    found = sorted(folder.glob("*.json")) or sorted((folder / "annotations").glob("*.json"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise DataError(
            f"no dataset in {folder}: expected a COCO .json file (there or in annotations/) "
            "or, for YOLO, images/ and labels/ folders",
            hint="pass the COCO JSON file itself, or a YOLO folder with images/ and labels/",
        )
    raise DataError(
        f"{len(found)} JSON files in {folder}: {', '.join(p.name for p in found)}; "
        "expected one COCO file",
        hint="pass the COCO JSON file itself",
    )


def _has_fields(entry: Any, wanted: dict[str, type], where: str, bad: list[str]) -> bool:
    if not isinstance(entry, dict):
        bad.append(f"{where} (expected an object, found {type(entry).__name__})")
        return False
    wrong = [
        f"{key} ({kind.__name__})"
        for key, kind in wanted.items()
        if not isinstance(entry.get(key), kind) or isinstance(entry.get(key), bool)
    ]
    if wrong:
        bad.append(f"{where} (missing or wrong type: {', '.join(wrong)})")
    return not wrong


def _has_bbox(entry: dict[str, Any], where: str, bad: list[str]) -> bool:
    bbox = entry.get("bbox")
    if (
        isinstance(bbox, list)
        and len(bbox) == 4
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox)
    ):
        return True
    bad.append(f"{where} (bbox must be [x, y, width, height] numbers, found {bbox!r})")
    return False


def _listed_error(message: str, items: list[str], hint: str) -> DataError:
    listed = "; ".join(items[:_MAX_LISTED])
    more = f"; ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return DataError(f"{message}: {listed}{more}", hint=hint)
