variable "project" {
  description = "Google Cloud project ID."
  type        = string
}

variable "region" {
  description = "Region for the subnet, Cloud NAT and Cloud SQL."
  type        = string
  default     = "asia-northeast1"
}

variable "zone" {
  description = "Zone of the two VMs."
  type        = string
  default     = "asia-northeast1-b"
}

variable "domain" {
  description = "The public name of the app (DNS A record to the sekisho_ip output); sekisho gets its certificate for it with ACME."
  type        = string
}

variable "allowed_domain" {
  description = "The Google Workspace domain whose accounts may sign in (example.com)."
  type        = string
}

variable "oauth_client_id" {
  description = "Client ID of the OAuth client (APIs & Services > Credentials) with the redirect URI https://DOMAIN/.sekisho/oidc/google/callback; its secret goes into the sekisho-oidc-client-secret secret."
  type        = string
}

variable "acme_email" {
  description = "Contact address for the ACME (Let's Encrypt) account."
  type        = string
}

variable "sekisho_image" {
  description = "Container image of sekisho (deploy/container/Dockerfile), pinned by digest."
  type        = string
}

variable "app_machine_type" {
  description = "Machine type of the app VM (Dify)."
  type        = string
  default     = "e2-standard-4"
}

variable "app_port" {
  description = "Port the app listens on, reachable only from sekisho."
  type        = number
  default     = 80
}

variable "subnet_cidr" {
  description = "Address range of the subnet both VMs live in."
  type        = string
  default     = "10.10.0.0/24"
}

variable "cloud_sql" {
  description = "Keep sekisho's state in a Cloud SQL Postgres (private IP) instead of the VM's disk; needed for more than one sekisho VM."
  type        = bool
  default     = false
}

variable "admin_ssh_ranges" {
  description = "Address ranges allowed to SSH to the sekisho VM itself (empty: none; use the serial console or IAP TCP forwarding, 35.235.240.0/20)."
  type        = list(string)
  default     = []
}
