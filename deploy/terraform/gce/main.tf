# Seed layout 1: Dify on a VM with no external IP, Cloud NAT for its
# outbound calls, sekisho in front on a VM of its own with a static IP and
# ACME certificates, in place of the HTTPS load balancer, IAP and Cloud Armor.
# Only sekisho reaches the app's port, and only sekisho's tunnel reaches the
# app's port 22.

locals {
  secrets = ["sekisho-session-key", "sekisho-assertion-key", "sekisho-oidc-client-secret"]
}

resource "google_compute_network" "vpc" {
  name                    = "sekisho-vpc"
  auto_create_subnetworks = false
}

resource "google_compute_subnetwork" "main" {
  name                     = "sekisho-subnet"
  network                  = google_compute_network.vpc.id
  region                   = var.region
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true
}

# Cloud NAT: the app VM calls out (model APIs, package mirrors) without an
# external address of its own.
resource "google_compute_router" "nat" {
  name    = "sekisho-router"
  network = google_compute_network.vpc.id
  region  = var.region
}

resource "google_compute_router_nat" "nat" {
  name                               = "sekisho-nat"
  router                             = google_compute_router.nat.name
  region                             = var.region
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"
  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}

# Service accounts with only what each VM needs.
resource "google_service_account" "sekisho" {
  account_id   = "sekisho"
  display_name = "sekisho gateway"
}

resource "google_service_account" "app" {
  account_id   = "dify-app"
  display_name = "Dify app VM"
}

resource "google_project_iam_member" "sekisho_logs" {
  project = var.project
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.sekisho.email}"
}

resource "google_project_iam_member" "sekisho_metrics" {
  project = var.project
  role    = "roles/monitoring.metricWriter"
  member  = "serviceAccount:${google_service_account.sekisho.email}"
}

# The VM pulls sekisho's image from Artifact Registry.
resource "google_project_iam_member" "sekisho_pull" {
  project = var.project
  role    = "roles/artifactregistry.reader"
  member  = "serviceAccount:${google_service_account.sekisho.email}"
}

resource "google_project_iam_member" "app_logs" {
  project = var.project
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.app.email}"
}

# Secrets live in Secret Manager; their values are added with gcloud (see
# the README), never through Terraform state. sekisho reads them with
# gcp-secret: references.
resource "google_secret_manager_secret" "sekisho" {
  for_each  = toset(local.secrets)
  secret_id = each.key
  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_iam_member" "sekisho" {
  for_each  = google_secret_manager_secret.sekisho
  secret_id = each.value.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.sekisho.email}"
}

resource "google_compute_address" "sekisho" {
  name   = "sekisho-ip"
  region = var.region
}

# The app: no external IP, reachable only from sekisho.
resource "google_compute_instance" "app" {
  name         = "dify"
  machine_type = var.app_machine_type
  zone         = var.zone
  tags         = ["dify-app"]

  boot_disk {
    initialize_params {
      image = "debian-cloud/debian-12"
      size  = 50
    }
  }

  network_interface {
    subnetwork = google_compute_subnetwork.main.id
  }

  service_account {
    email  = google_service_account.app.email
    scopes = ["cloud-platform"]
  }

  shielded_instance_config {
    enable_secure_boot          = true
    enable_vtpm                 = true
    enable_integrity_monitoring = true
  }

  metadata = {
    block-project-ssh-keys = "true"
  }
}

# sekisho: the only public address, ports 80 (ACME, redirect) and 443.
resource "google_compute_instance" "sekisho" {
  name         = "sekisho"
  machine_type = "e2-small"
  zone         = var.zone
  tags         = ["sekisho"]

  boot_disk {
    initialize_params {
      image = "cos-cloud/cos-stable"
      size  = 10
    }
  }

  network_interface {
    subnetwork = google_compute_subnetwork.main.id
    access_config {
      nat_ip = google_compute_address.sekisho.address
    }
  }

  service_account {
    email  = google_service_account.sekisho.email
    scopes = ["cloud-platform"]
  }

  shielded_instance_config {
    enable_secure_boot          = true
    enable_vtpm                 = true
    enable_integrity_monitoring = true
  }

  # Container-Optimized OS runs this cloud-init: the config file, and a
  # unit that runs the image read-only, without capabilities, as non-root
  # (binding 80 and 443 in its own network namespace).
  metadata = {
    block-project-ssh-keys = "true"
    google-logging-enabled = "true"
    user-data              = local.cloud_init
  }
}

locals {
  sekisho_config = templatefile("${path.module}/sekisho.yaml.tftpl", {
    project         = var.project
    domain          = var.domain
    acme_email      = var.acme_email
    domain_suffix   = var.allowed_domain
    oauth_client_id = var.oauth_client_id
    app_url         = "http://${google_compute_instance.app.network_interface[0].network_ip}:${var.app_port}"
    store           = var.cloud_sql ? "store: {driver: postgres, url: \"gcp-secret:projects/${var.project}/secrets/sekisho-database-url/versions/latest\"}" : ""
  })
  cloud_init = <<-EOT
    #cloud-config
    write_files:
      - path: /etc/sekisho/sekisho.yaml
        permissions: "0644"
        encoding: b64
        content: ${base64encode(local.sekisho_config)}
      - path: /etc/systemd/system/sekisho.service
        permissions: "0644"
        content: |
          [Unit]
          Description=sekisho
          Wants=network-online.target
          After=network-online.target
          [Service]
          ExecStartPre=/bin/mkdir -p /var/lib/sekisho
          ExecStartPre=/bin/chown 65532:65532 /var/lib/sekisho
          ExecStart=/usr/bin/docker run --rm --name sekisho --read-only --cap-drop ALL --security-opt no-new-privileges --sysctl net.ipv4.ip_unprivileged_port_start=80 -p 80:80 -p 443:443 -v /etc/sekisho:/etc/sekisho:ro -v /var/lib/sekisho:/var/lib/sekisho ${var.sekisho_image} serve --config /etc/sekisho/sekisho.yaml --log-format json
          ExecReload=/usr/bin/docker kill --signal HUP sekisho
          ExecStop=/usr/bin/docker stop -t 45 sekisho
          Restart=always
    runcmd:
      - systemctl daemon-reload
      - systemctl start sekisho.service
  EOT
}

# Firewall. The VPC denies all ingress by default; these open what the
# layout needs and nothing else.
resource "google_compute_firewall" "sekisho_public" {
  name          = "sekisho-public"
  network       = google_compute_network.vpc.id
  direction     = "INGRESS"
  source_ranges = ["0.0.0.0/0"]
  target_tags   = ["sekisho"]
  allow {
    protocol = "tcp"
    ports    = ["80", "443"]
  }
}

resource "google_compute_firewall" "app_from_sekisho" {
  name                    = "dify-from-sekisho"
  network                 = google_compute_network.vpc.id
  direction               = "INGRESS"
  source_service_accounts = [google_service_account.sekisho.email]
  target_tags             = ["dify-app"]
  allow {
    protocol = "tcp"
    ports    = [tostring(var.app_port)]
  }
}

# SSH to the app only through sekisho's identity-checked tunnel.
resource "google_compute_firewall" "app_ssh_from_sekisho" {
  name                    = "dify-ssh-from-sekisho"
  network                 = google_compute_network.vpc.id
  direction               = "INGRESS"
  source_service_accounts = [google_service_account.sekisho.email]
  target_tags             = ["dify-app"]
  allow {
    protocol = "tcp"
    ports    = ["22"]
  }
}

resource "google_compute_firewall" "sekisho_admin_ssh" {
  count         = length(var.admin_ssh_ranges) > 0 ? 1 : 0
  name          = "sekisho-admin-ssh"
  network       = google_compute_network.vpc.id
  direction     = "INGRESS"
  source_ranges = var.admin_ssh_ranges
  target_tags   = ["sekisho"]
  allow {
    protocol = "tcp"
    ports    = ["22"]
  }
}

# Optional: sekisho's state in Cloud SQL Postgres on a private IP.
resource "google_compute_global_address" "sql" {
  count         = var.cloud_sql ? 1 : 0
  name          = "sekisho-sql-range"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  prefix_length = 20
  network       = google_compute_network.vpc.id
}

resource "google_service_networking_connection" "sql" {
  count                   = var.cloud_sql ? 1 : 0
  network                 = google_compute_network.vpc.id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.sql[0].name]
}

resource "google_sql_database_instance" "sekisho" {
  count               = var.cloud_sql ? 1 : 0
  name                = "sekisho"
  database_version    = "POSTGRES_15"
  region              = var.region
  deletion_protection = true
  depends_on          = [google_service_networking_connection.sql]
  settings {
    tier = "db-custom-1-3840"
    ip_configuration {
      ipv4_enabled    = false
      private_network = google_compute_network.vpc.id
      ssl_mode        = "ENCRYPTED_ONLY"
    }
    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
    }
  }
}

resource "google_sql_database" "sekisho" {
  count    = var.cloud_sql ? 1 : 0
  name     = "sekisho"
  instance = google_sql_database_instance.sekisho[0].name
}

resource "google_secret_manager_secret" "database_url" {
  count     = var.cloud_sql ? 1 : 0
  secret_id = "sekisho-database-url"
  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_iam_member" "database_url" {
  count     = var.cloud_sql ? 1 : 0
  secret_id = google_secret_manager_secret.database_url[0].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.sekisho.email}"
}

resource "google_project_iam_member" "sekisho_sql" {
  count   = var.cloud_sql ? 1 : 0
  project = var.project
  role    = "roles/cloudsql.client"
  member  = "serviceAccount:${google_service_account.sekisho.email}"
}
