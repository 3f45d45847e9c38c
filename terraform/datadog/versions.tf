terraform {
  # 1.9+: variable validations may refer to other variables (same floor as the AWS stack).
  required_version = ">= 1.9.0"

  required_providers {
    datadog = {
      source  = "DataDog/datadog"
      version = ">= 3.40, < 4.0"
    }
  }
}

# Credentials come from DD_API_KEY and DD_APP_KEY in the environment, never from a variable.
provider "datadog" {
  # null keeps the provider's default (DD_HOST, else https://api.datadoghq.com/).
  api_url = var.datadog_api_url
}
