"""Every SQS and S3 call: :class:`CloudResourceHandler` and the boto3 client wiring."""
