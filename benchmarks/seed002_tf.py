"""Seed 002's method (images_to_tfrec.py), re-implemented faithfully as the peer baseline for `make bench`:
tf.io.read_file + tf.io.extract_jpeg_shape + tf.train.Example + tf.io.TFRecordWriter, one file per 5,000."""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402  (importing TensorFlow is part of this method's cost)


def _bytes_feature(value):
    if isinstance(value, type(tf.constant(0))):
        value = value.numpy()
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int64_feature(value):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def _create_images_labels(label_file):
    with open(label_file) as f:
        lines = f.readlines()
    labels, names = [], []
    for line in lines:
        name, label = line.split()
        labels.append(int(label.strip()))
        names.append(name.strip())
    return labels, names


def write_tfrec(tfrec_filename, image_dir, img_list, label_list):
    with tf.io.TFRecordWriter(tfrec_filename) as writer:
        for i in range(len(img_list)):
            image = tf.io.read_file(os.path.join(image_dir, img_list[i]))
            shape = tf.io.extract_jpeg_shape(image, output_type=tf.dtypes.int32)
            feature_dict = {
                "label": _int64_feature(int(label_list[i])),
                "height": _int64_feature(shape[0]),
                "width": _int64_feature(shape[1]),
                "chans": _int64_feature(shape[2]),
                "image": _bytes_feature(image),
            }
            example = tf.train.Example(features=tf.train.Features(feature=feature_dict))
            writer.write(example.SerializeToString())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--image_dir", required=True)
    parser.add_argument("--label_file", required=True)
    parser.add_argument("--img_shard", type=int, default=5000)
    parser.add_argument("--tfrec_dir", required=True)
    args = parser.parse_args()
    labels, names = _create_images_labels(args.label_file)
    os.makedirs(args.tfrec_dir, exist_ok=True)
    for i, start in enumerate(range(0, len(names), args.img_shard)):
        write_tfrec(os.path.join(args.tfrec_dir, f"data_{i}.tfrecord"), args.image_dir,
                    names[start : start + args.img_shard], labels[start : start + args.img_shard])


if __name__ == "__main__":
    main()
