output "url" {
  description = "sekisho's public URL: the sign-in page and, behind it, Flowise."
  value       = google_cloud_run_v2_service.sekisho.uri
}

output "flowise_internal_url" {
  description = "Flowise's URL, reachable only from inside the VPC and only by sekisho's service account: the pool URL in sekisho.yaml."
  value       = google_cloud_run_v2_service.flowise.uri
}

output "sekisho_service_account" {
  description = "sekisho's service account (the only run.invoker of Flowise)."
  value       = google_service_account.sekisho.email
}

output "flowise_service_account" {
  description = "Flowise's service account."
  value       = google_service_account.flowise.email
}
