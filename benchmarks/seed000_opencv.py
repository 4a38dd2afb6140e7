"""Seed 000's method (OneFlow img2ofrecord.py), re-implemented faithfully as the re-encoding baseline for
`make bench`: one core, cv2.imread + cv2.imencode per image, length-prefixed records appended to part files.

The seed serializes with OneFlow's protobuf classes; OneFlow is not installed here, so the same message is
serialized with prep's OFRecord encoder (a small part of the per-image cost next to decode + encode)."""

import argparse
import os
import struct

import cv2

from prep.formats.ofrecord import encode_record


def encode_img_file(filename, ext=".jpg"):
    img = cv2.imread(filename)
    encoded_data = cv2.imencode(ext, img)[1]
    return encoded_data.tobytes()


def ndarray2ofrecords(dsfile, dataname, encoded_data, labelname, encoded_label):
    serialized = encode_record({dataname: ("bytes", [encoded_data]), labelname: ("int32", [encoded_label])})
    dsfile.write(struct.pack("q", len(serialized)))
    dsfile.write(serialized)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--image_root", required=True)
    parser.add_argument("--label_file", required=True)
    parser.add_argument("--part_num", type=int, default=5)
    parser.add_argument("--img_format", default=".jpg")
    parser.add_argument("--save_dir", required=True)
    args = parser.parse_args()
    os.makedirs(args.save_dir, exist_ok=True)
    with open(args.label_file) as f:
        lines = [line.split() for line in f]
    per_part = len(lines) // args.part_num
    part = 0
    for count, (name, label) in enumerate(lines):
        if count != 0 and count % per_part == 0 and part < args.part_num - 1:
            part += 1
        with open(os.path.join(args.save_dir, f"part-{part}"), "ab") as f:
            ndarray2ofrecords(f, "images", encode_img_file(os.path.join(args.image_root, name), args.img_format), "labels", int(label))


if __name__ == "__main__":
    main()
