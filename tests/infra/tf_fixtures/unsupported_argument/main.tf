# Deliberately wrong: the offline validation test expects Terraform to reject both resources.
terraform {
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0, < 7.0"
    }
  }
}

resource "aws_s3_bucket" "misspelt" {
  bucket_prefx = "example-"
}

# function_name is set, role (required) is not.
resource "aws_lambda_function" "incomplete" {
  function_name = "example"
}
