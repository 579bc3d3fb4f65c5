variable "project" {
  description = "Google Cloud project ID."
  type        = string
}

variable "region" {
  description = "Region of the Cloud Run services, the connector network and Cloud SQL."
  type        = string
  default     = "asia-northeast1"
}

variable "sekisho_image" {
  description = "Container image of sekisho (deploy/container/Dockerfile) in Artifact Registry, pinned by digest."
  type        = string
}

variable "flowise_image" {
  description = "Container image of Flowise, pinned by digest."
  type        = string
  default     = "docker.io/flowiseai/flowise:latest"
}

variable "allowed_domain" {
  description = "The Google Workspace domain whose accounts may sign in (example.com)."
  type        = string
}

variable "subnet_cidr" {
  description = "Address range of the subnet sekisho's Direct VPC egress uses to reach Flowise's internal ingress."
  type        = string
  default     = "10.20.0.0/24"
}
