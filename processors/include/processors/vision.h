#pragma once
// Gate camera snapshots: find faces and blur them out of any image Courtyard keeps or serves
// (residential gates may not rely on faces alone, and face data stays minimal), and read licence
// plates. OpenCV's Haar cascades (Debian's opencv-data) find faces and plate regions; Tesseract
// (Debian's tesseract-ocr) reads the plate. OpenCV and Tesseract types stay out of this header.
// A FaceDetector or PlateReader is not thread-safe: one per thread.
#include <cstddef>
#include <expected>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace courtyard::processors {

struct VisionConfig {
  // Frontal-face cascade; a stricter min_neighbors trades small faces for fewer false ones.
  std::string face_model = "/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml";
  double scale_step = 1.1;              // image pyramid step between scales
  int min_neighbors = 10;               // overlapping detections a face needs
  int min_face_px = 24;                 // smallest face side considered, pixels
  std::size_t max_image_bytes = 2 << 20;  // larger snapshots are refused
  int max_side_px = 4096;               // larger images are refused
  int blur_cells = 4;                   // a blurred head keeps this many cells per side, at most
  std::string plate_model = "/usr/share/opencv4/haarcascades/haarcascade_russian_plate_number.xml";
  int plate_min_neighbors = 3;          // overlapping detections a plate region needs
  std::string ocr_language = "eng";     // Tesseract's traineddata for plate characters
  std::size_t min_plate_chars = 5;      // shorter readings are not plates (Chinese plates have 7 or 8)
};

struct Box {
  int x = 0, y = 0, width = 0, height = 0;
  bool operator==(const Box&) const = default;
};

struct ImageScan {
  int width = 0, height = 0;
  std::vector<Box> faces;
};

class FaceDetector {
 public:
  // Errors: the model cannot be loaded.
  static std::expected<std::unique_ptr<FaceDetector>, std::string> open(const VisionConfig& config);
  ~FaceDetector();
  // Faces in an encoded image (JPEG, PNG). Errors say why the bytes are not a usable image.
  std::expected<ImageScan, std::string> scan(std::string_view image) const;
  // The image as JPEG with each region (a face or a plate, and a margin around it) pixelated
  // beyond recognition.
  std::expected<std::string, std::string> blur_faces(std::string_view image, const std::vector<Box>& regions) const;

 private:
  FaceDetector();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A plate read in an image: where, what it says (A-Z and 0-9 only), and confidence 0..100 (its least certain character).
struct PlateReading {
  Box region;
  std::string text;
  double confidence = 0;
};

class PlateReader {
 public:
  // Errors: the plate model or Tesseract's language data cannot be loaded.
  static std::expected<std::unique_ptr<PlateReader>, std::string> open(const VisionConfig& config);
  ~PlateReader();
  // Every plate region found, with its text (empty when nothing legible was read).
  std::expected<std::vector<PlateReading>, std::string> read(std::string_view image) const;

 private:
  PlateReader();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Photographs side by side in one JPEG, scaled up to the tallest one's height: the simulator's and the
// tests' gate scene with several people in it. Errors: a photograph does not decode.
std::expected<std::string, std::string> side_by_side_jpeg(const std::vector<std::string>& photos);

// A car park scene with a plate saying `text` (A-Z, 0-9), as JPEG: what the simulator's
// vehicle-gate cameras send, and what the tests read back.
std::string render_plate_jpeg(std::string_view text);

// Plates whose rendering the PlateReader reads back exactly (tested): the simulator's fleet of cars.
// Not every text is: in this font Tesseract takes some 5s for S and 0s for Q.
const std::vector<std::string>& legible_plates();

}  // namespace courtyard::processors
