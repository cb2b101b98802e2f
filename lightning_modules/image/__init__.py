"""Lightning code for pictures: the DataModule (``data``: the decoded-picture cache, batch augmentation
on the device), the LightningModule (``module``) and what training adds to the networks (``networks``:
pretrained weights from torchvision's cache, a new last layer, freezing)."""
