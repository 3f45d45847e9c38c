terraform {
  # 1.9+: variable validations may refer to other variables.
  required_version = ">= 1.9.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0, < 7.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4, < 3.0"
    }
  }
}

provider "aws" {
  # null falls back to AWS_REGION / the profile's region, like the forwarder itself.
  region = var.aws_region

  default_tags {
    tags = var.tags
  }
}
