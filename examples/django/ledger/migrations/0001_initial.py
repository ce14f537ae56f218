from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []

    operations = [
        migrations.CreateModel(
            name="Entry",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False)),
                ("account", models.CharField(max_length=64)),
                ("amount_cents", models.IntegerField()),
                ("memo", models.CharField(blank=True, max_length=200)),
            ],
        ),
    ]
