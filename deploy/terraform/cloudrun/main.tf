# Seed layout 2: Flowise on Cloud Run with its database on Cloud SQL,
# secrets in Secret Manager, and an ingress that is not public: only
# sekisho's service account may invoke it (roles/run.invoker), and only
# from inside the VPC (internal ingress). sekisho is the public Cloud Run
# service in front, signing users in and calling Flowise with an ID token
# (pools: google_id_token).

resource "google_service_account" "sekisho" {
  account_id   = "sekisho"
  display_name = "sekisho gateway"
}

resource "google_service_account" "flowise" {
  account_id   = "flowise"
  display_name = "Flowise on Cloud Run"
}

resource "google_compute_network" "vpc" {
  name                    = "sekisho-run-vpc"
  auto_create_subnetworks = false
}

resource "google_compute_subnetwork" "run" {
  name                     = "sekisho-run-subnet"
  network                  = google_compute_network.vpc.id
  region                   = var.region
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true
}

# Secrets: values are added with gcloud (README), never through Terraform.
locals {
  sekisho_secrets = ["sekisho-config", "sekisho-session-key", "sekisho-assertion-key", "sekisho-oidc-client-secret", "sekisho-database-url"]
  flowise_secrets = ["flowise-database-password"]
}

resource "google_secret_manager_secret" "all" {
  for_each  = toset(concat(local.sekisho_secrets, local.flowise_secrets))
  secret_id = each.key
  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_iam_member" "sekisho" {
  for_each  = toset(local.sekisho_secrets)
  secret_id = google_secret_manager_secret.all[each.key].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.sekisho.email}"
}

resource "google_secret_manager_secret_iam_member" "flowise" {
  for_each  = toset(local.flowise_secrets)
  secret_id = google_secret_manager_secret.all[each.key].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.flowise.email}"
}

# Cloud SQL Postgres for Flowise (and sekisho's state, in its own database).
resource "google_sql_database_instance" "main" {
  name                = "flowise"
  database_version    = "POSTGRES_15"
  region              = var.region
  deletion_protection = true
  settings {
    tier = "db-custom-1-3840"
    ip_configuration {
      ipv4_enabled = true # reached only through the Cloud SQL connector (IAM), no authorized networks
      ssl_mode     = "ENCRYPTED_ONLY"
    }
    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
    }
  }
}

resource "google_sql_database" "flowise" {
  name     = "flowise"
  instance = google_sql_database_instance.main.name
}

resource "google_sql_database" "sekisho" {
  name     = "sekisho"
  instance = google_sql_database_instance.main.name
}

resource "google_project_iam_member" "sql_client" {
  for_each = toset([google_service_account.sekisho.email, google_service_account.flowise.email])
  project  = var.project
  role     = "roles/cloudsql.client"
  member   = "serviceAccount:${each.key}"
}

# Flowise: internal ingress, invoked by sekisho's service account alone.
resource "google_cloud_run_v2_service" "flowise" {
  name     = "flowise"
  location = var.region
  ingress  = "INGRESS_TRAFFIC_INTERNAL_ONLY"

  template {
    service_account = google_service_account.flowise.email
    containers {
      image = var.flowise_image
      ports {
        container_port = 3000
      }
      env {
        name  = "DATABASE_TYPE"
        value = "postgres"
      }
      env {
        name  = "DATABASE_HOST"
        value = "/cloudsql/${google_sql_database_instance.main.connection_name}"
      }
      env {
        name  = "DATABASE_NAME"
        value = google_sql_database.flowise.name
      }
      env {
        name  = "DATABASE_USER"
        value = "flowise"
      }
      env {
        name = "DATABASE_PASSWORD"
        value_source {
          secret_key_ref {
            secret  = google_secret_manager_secret.all["flowise-database-password"].secret_id
            version = "latest"
          }
        }
      }
      volume_mounts {
        name       = "cloudsql"
        mount_path = "/cloudsql"
      }
    }
    volumes {
      name = "cloudsql"
      cloud_sql_instance {
        instances = [google_sql_database_instance.main.connection_name]
      }
    }
  }
}

resource "google_cloud_run_v2_service_iam_member" "flowise_invoker" {
  name     = google_cloud_run_v2_service.flowise.name
  location = var.region
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.sekisho.email}"
}

# sekisho: public, behind Cloud Run's front end (TLS there); its egress goes
# through the VPC so that Flowise's internal ingress admits it.
resource "google_cloud_run_v2_service" "sekisho" {
  name     = "sekisho"
  location = var.region
  ingress  = "INGRESS_TRAFFIC_ALL"

  template {
    service_account                  = google_service_account.sekisho.email
    max_instance_request_concurrency = 1000
    timeout                          = "3600s" # streams: Cloud Run ends a request after this
    vpc_access {
      egress = "ALL_TRAFFIC"
      network_interfaces {
        network    = google_compute_network.vpc.id
        subnetwork = google_compute_subnetwork.run.id
      }
    }
    containers {
      image = var.sekisho_image
      args  = ["serve", "--config", "/etc/sekisho/sekisho.yaml", "--log-format", "json"]
      ports {
        container_port = 8080
      }
      startup_probe {
        http_get {
          path = "/.sekisho/healthz"
        }
      }
      liveness_probe {
        http_get {
          path = "/.sekisho/healthz"
        }
      }
      volume_mounts {
        name       = "config"
        mount_path = "/etc/sekisho"
      }
      volume_mounts {
        name       = "data"
        mount_path = "/var/lib/sekisho"
      }
      volume_mounts {
        name       = "cloudsql"
        mount_path = "/cloudsql"
      }
    }
    volumes {
      name = "cloudsql"
      cloud_sql_instance {
        instances = [google_sql_database_instance.main.connection_name]
      }
    }
    volumes {
      name = "config"
      secret {
        secret = google_secret_manager_secret.all["sekisho-config"].secret_id
        items {
          version = "latest"
          path    = "sekisho.yaml"
        }
      }
    }
    volumes {
      name = "data"
      empty_dir {
        medium = "MEMORY"
      }
    }
  }
}

# Anyone may reach sekisho; sekisho decides who reaches Flowise.
resource "google_cloud_run_v2_service_iam_member" "sekisho_public" {
  name     = google_cloud_run_v2_service.sekisho.name
  location = var.region
  role     = "roles/run.invoker"
  member   = "allUsers"
}
