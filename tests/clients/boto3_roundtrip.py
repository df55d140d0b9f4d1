"""Uses Ferry's embedded store with boto3, the standard AWS SDK for Python.

Usage: boto3_roundtrip.py ENDPOINT BUCKET ACCESS_KEY SECRET_KEY
Exits non-zero (with a traceback) if anything a user would rely on does not work.
"""
import hashlib
import io
import os
import sys

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

endpoint, bucket, access_key, secret_key = sys.argv[1:5]
s3 = boto3.client(
    "s3",
    endpoint_url=endpoint,
    aws_access_key_id=access_key,
    aws_secret_access_key=secret_key,
    region_name="us-east-1",
    config=Config(s3={"addressing_style": "path"}),
)

# A plain PUT (today's boto3 adds a CRC32 checksum, sent as an aws-chunked trailer).
s3.put_object(Bucket=bucket, Key="boto/hello.txt", Body=b"hello from boto3", ContentType="text/plain")
got = s3.get_object(Bucket=bucket, Key="boto/hello.txt")
assert got["Body"].read() == b"hello from boto3"
assert got["ContentType"] == "text/plain"
head = s3.head_object(Bucket=bucket, Key="boto/hello.txt")
assert head["ContentLength"] == 16

# A multipart upload through the transfer manager (three parts of 5 MiB and a tail).
data = os.urandom(16 * 1024 * 1024 + 123)
config = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
s3.upload_fileobj(io.BytesIO(data), bucket, "boto/big.bin", Config=config)
out = io.BytesIO()
s3.download_fileobj(bucket, "boto/big.bin", out)
assert hashlib.sha256(out.getvalue()).digest() == hashlib.sha256(data).digest()
assert s3.head_object(Bucket=bucket, Key="boto/big.bin")["ETag"].strip('"').endswith("-4")

listed = s3.list_objects_v2(Bucket=bucket, Prefix="boto/")
assert sorted(o["Key"] for o in listed["Contents"]) == ["boto/big.bin", "boto/hello.txt"]

s3.delete_object(Bucket=bucket, Key="boto/hello.txt")
try:
    s3.head_object(Bucket=bucket, Key="boto/hello.txt")
    raise AssertionError("deleted object still there")
except s3.exceptions.ClientError as e:
    assert e.response["Error"]["Code"] in ("404", "NoSuchKey"), e.response

# A wrong secret is refused.
bad = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access_key, aws_secret_access_key="wrong",
                   region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))
try:
    bad.get_object(Bucket=bucket, Key="boto/big.bin")
    raise AssertionError("a wrong secret was accepted")
except bad.exceptions.ClientError as e:
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 403, e.response
print("boto3 round trip ok")
