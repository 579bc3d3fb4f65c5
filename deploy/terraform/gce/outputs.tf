output "sekisho_ip" {
  description = "The static address to point the domain's DNS A record at."
  value       = google_compute_address.sekisho.address
}

output "url" {
  description = "The app's address once DNS points at sekisho_ip."
  value       = "https://${var.domain}/"
}

output "sekisho_service_account" {
  description = "sekisho's service account: the only identity that reaches the app VM's port and SSH."
  value       = google_service_account.sekisho.email
}

output "app_internal_ip" {
  description = "The app VM's internal address (it has no external one)."
  value       = google_compute_instance.app.network_interface[0].network_ip
}
